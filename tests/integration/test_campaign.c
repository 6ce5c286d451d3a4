/* Campaigns end to end through the binary, on the sample data: every
 * targeting activity's count against hand-written SQL run by sqlite3 on
 * the same database (NULLs included), plan --json and --dot, check
 * errors (all at once, file:line, exit 2), a run's CSV export, and a run
 * killed with SIGKILL then resumed without a row delivered twice. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support/fs.h"
#include "support/server.h"

static const char *bin, *src, *plugins;
static char *dir, *cfg, *db;

static int baton(char **out, char **err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = run_baton_v(NULL, cfg, out, err, fmt, ap);
    va_end(ap);
    return rc;
}

/* One number from sqlite3 on the test database. */
static long long sql_count(const char *sql)
{
    char *cmd, *out = NULL, *err = NULL;
    if (asprintf(&cmd, "sqlite3 %s \"%s\"", db, sql) < 0)
        abort();
    int rc = run_capture(cmd, &out, &err);
    if (rc != 0)
        fail_msg("sqlite3 failed: %s\n%s", sql, err);
    long long n = atoll(out);
    free(cmd);
    free(out);
    free(err);
    return n;
}

static int setup(void **st)
{
    bin = getenv("BATON_BIN");
    src = getenv("BATON_SRC");
    plugins = getenv("BATON_PLUGINS");
    if (!bin || !src || !plugins)
        return -1;
    dir = tmpdir_make("campaign-it");
    char *text;
    if (asprintf(
            &text,
            "baton: { data_dir = \"var\"; plugin_path = [ \"%s\" ]; log = { level = \"warn\"; }; "
            "};\n"
            "sources: { crm: { plugin = \"source_sqlite\"; path = \"var/crm.db\"; schema = "
            "\"%s/conf/schema.cfg\"; }; };\n"
            "profiles = \"crm\";\n"
            "channels: {\n"
            "  mail: { plugin = \"channel_directmail\"; dir = \"var/exports\"; };\n"
            /* the kill -9 below may catch a batch in deliver(): directmail drops
             * repeats of a key (its journal), so those rows go again on --resume
             * instead of staying uncertain and missing from the export */
            "  slow: { plugin = \"channel_directmail\"; dir = \"var/slow\"; rate = 2500; batch = "
            "50;"
            " resend_uncertain = true; };\n"
            "  post: { plugin = \"channel_directmail\"; dir = \"var/post\"; address = \"email\"; "
            "consent = \"consent_email\"; };\n"
            "  off:  { enabled = false; plugin = \"channel_directmail\"; dir = \"var/off\"; };\n"
            "  email: { plugin = \"channel_email\"; port = 9; from = \"Shop <news@example.com>\";\n"
            "           address = \"email\"; consent = \"consent_email\"; };\n"
            "  noaddr: { plugin = \"channel_email\"; port = 9; from = \"news@example.com\"; };\n"

            "};\n"
            "campaigns = [ \"campaigns\" ];\n",
            plugins, src) < 0)
        abort();
    cfg = file_write(dir, "baton.cfg", text);
    free(text);
    if (asprintf(&db, "%s/var/crm.db", dir) < 0)
        abort();
    char *cd;
    if (asprintf(&cd, "mkdir -p %s/campaigns", dir) < 0 || system(cd) != 0)
        abort();
    free(cd);
    char *out, *err;
    int rc = baton(&out, &err, "sample-data --profiles 3000 --seed 3");
    free(out);
    free(err);
    return rc;
}

static int teardown(void **st)
{
    tmpdir_remove(dir);
    free(dir);
    free(cfg);
    free(db);
    return 0;
}

static const char targeting[] =
    "campaign: {\n"
    "  name = \"t\";\n"
    "  activities = (\n"
    "    { id = \"gold\"; type = \"build_audience\"; dimension = \"profiles\"; filter = \"tier == "
    "'gold'\"; },\n"
    "    { id = \"big\"; type = \"build_audience\"; dimension = \"profiles\";\n"
    "      filter = \"count(orders where amount > 200) >= 2\"; },\n"
    "    { id = \"noconsent\"; type = \"build_audience\"; dimension = \"profiles\"; filter = \"not "
    "consent_email\"; },\n"
    "    { id = \"recent\"; type = \"build_audience\"; dimension = \"profiles\";\n"
    "      filter = \"exists(orders where created_at > timestamp('2025-06-01T00:00:00Z'))\"; },\n"
    "    { id = \"u\"; type = \"combine\"; op = \"union\"; inputs = [ \"gold\", \"big\" ]; },\n"
    "    { id = \"i\"; type = \"combine\"; op = \"intersection\"; inputs = [ \"gold\", \"big\" ]; "
    "},\n"
    "    { id = \"x\"; type = \"combine\"; op = \"exclusion\"; inputs = [ \"u\", \"recent\" ]; },\n"
    "    { id = \"d\"; type = \"deduplicate\"; input = \"u\"; by = [ \"tier\" ]; keep = \"score "
    "desc\"; },\n"
    "    { id = \"dm\"; type = \"deduplicate\"; input = \"u\"; by = [ \"tier\" ]; nulls = "
    "\"merge\"; },\n"
    "    { id = \"e\"; type = \"enrich\"; input = \"u\";\n"
    "      add = ( { name = \"total\"; value = \"sum(orders.amount)\"; } ); },\n"
    "    { id = \"s\"; type = \"split\"; input = \"e\";\n"
    "      branches = ( { name = \"hi\"; filter = \"total > 1000\"; }, { name = \"mid\"; filter = "
    "\"total > 500\"; },\n"
    "                   { name = \"rest\"; remainder = true; } ); },\n"
    "    { id = \"sx\"; type = \"split\"; input = \"e\"; exclusive = true;\n"
    "      branches = ( { name = \"hi\"; filter = \"total > 1000\"; }, { name = \"mid\"; filter = "
    "\"total > 500\"; } ); },\n"
    "    { id = \"r\"; type = \"split\"; input = \"gold\"; mode = \"random\"; seed = 5;\n"
    "      branches = ( { name = \"a\"; percent = 30; }, { name = \"b\"; percent = 70; } ); },\n"
    "    { id = \"l\"; type = \"split\"; input = \"gold\"; mode = \"limit\"; order = \"score "
    "desc\";\n"
    "      branches = ( { name = \"top\"; limit = 10; }, { name = \"rest\"; remainder = true; } ); "
    "},\n"
    "    { id = \"ord\"; type = \"change_dimension\"; input = \"gold\"; to = \"orders\"; filter = "
    "\"amount > 100\"; },\n"
    "    { id = \"st\"; type = \"change_dimension\"; input = \"ord\"; to = \"stores\"; },\n"
    "    { id = \"bs\"; type = \"change_dimension\"; input = \"gold\"; to = \"stores\"; "
    "through = [ \"orders\" ];\n      filter = \"city != 'x'\"; },\n"
    "    { id = \"letters\"; type = \"send\"; channel = \"mail\"; input = \"ord\";\n"
    "      columns = [ \"profile.first_name\", \"store.name\", \"amount\" ]; },\n"
    "    { id = \"posted\"; type = \"send\"; channel = \"post\"; input = \"u\"; columns = [ "
    "\"first_name\" ]; }\n"
    "  );\n};\n";

static json_int_t count_of(json_t *counts, const char *name)
{
    json_t *v = json_object_get(counts, name);
    if (!v)
        fail_msg("no count for '%s'", name);
    return json_integer_value(v);
}

#define GOLD "SELECT id FROM profiles WHERE tier = 'gold'"
#define BIG                                                                                        \
    "SELECT id FROM profiles p WHERE (SELECT count(*) FROM orders o WHERE o.profile_id = p.id "    \
    "AND o.amount > 200) >= 2"
#define RECENT                                                                                     \
    "SELECT id FROM profiles p WHERE EXISTS (SELECT 1 FROM orders o WHERE o.profile_id = p.id "    \
    "AND o.created_at > '2025-06-01T00:00:00Z')"
#define U "SELECT id FROM (" GOLD " UNION " BIG ")"
#define TOTAL "(SELECT sum(amount) FROM orders o WHERE o.profile_id = p.id)"

static void test_plan_matches_hand_written_sql(void **st)
{
    char *path = file_write(dir, "campaigns/t.cfg", targeting);
    char *out, *err;
    int rc = baton(&out, &err, "campaign plan %s --json", path);
    if (rc != 0)
        fail_msg("plan failed (%d): %s", rc, err);
    json_error_t je;
    json_t *o = json_loads(out, 0, &je);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "campaign")), "t");
    json_t *c = json_object_get(o, "counts");
    long long gold = sql_count("SELECT count(*) FROM (" GOLD ")");
    assert_true(gold > 50);
    assert_int_equal(count_of(c, "gold"), gold);
    assert_int_equal(count_of(c, "big"), sql_count("SELECT count(*) FROM (" BIG ")"));
    /* NULL consent is unknown: `not consent_email` keeps false only */
    assert_int_equal(count_of(c, "noconsent"),
                     sql_count("SELECT count(*) FROM profiles WHERE consent_email = 0"));
    assert_true(sql_count("SELECT count(*) FROM profiles WHERE consent_email IS NULL") > 0);
    assert_int_equal(count_of(c, "recent"), sql_count("SELECT count(*) FROM (" RECENT ")"));
    assert_int_equal(count_of(c, "u"), sql_count("SELECT count(*) FROM (" U ")"));
    assert_int_equal(count_of(c, "i"),
                     sql_count("SELECT count(*) FROM (" GOLD " INTERSECT " BIG ")"));
    assert_int_equal(count_of(c, "x"), sql_count("SELECT count(*) FROM (" U " EXCEPT " RECENT ")"));
    /* one row per tier, and every row whose tier is NULL */
    assert_int_equal(
        count_of(c, "d"),
        sql_count("SELECT count(DISTINCT tier) + sum(tier IS NULL) FROM profiles WHERE id IN (" U
                  ")"));
    /* change_dimension through orders: the stores gold profiles bought in */
    assert_int_equal(count_of(c, "bs"),
                     sql_count("SELECT count(DISTINCT s.id) FROM stores s JOIN orders o ON "
                               "o.store_id = s.id WHERE o.profile_id IN (" GOLD ") AND s.city <> "
                               "'x'"));
    assert_true(count_of(c, "bs") > 0);
    /* nulls = "merge": the NULL tiers are one more group */
    assert_int_equal(
        count_of(c, "dm"),
        sql_count("SELECT count(DISTINCT tier) + max(tier IS NULL) FROM profiles WHERE "
                  "id IN (" U ")"));
    assert_true(count_of(c, "dm") < count_of(c, "d"));
    /* notes: always there, empty here */
    assert_true(json_is_object(json_object_get(o, "notes")));
    assert_int_equal(json_object_size(json_object_get(o, "notes")), 0);
    assert_int_equal(count_of(c, "e"), count_of(c, "u"));
    assert_int_equal(
        count_of(c, "s.hi"),
        sql_count("SELECT count(*) FROM profiles p WHERE id IN (" U ") AND " TOTAL " > 1000"));
    assert_int_equal(
        count_of(c, "s.mid"),
        sql_count("SELECT count(*) FROM profiles p WHERE id IN (" U ") AND " TOTAL " > 500"));
    /* remainder: neither branch true, NULL totals (no orders) included */
    assert_int_equal(count_of(c, "s.rest"),
                     sql_count("SELECT count(*) FROM profiles p WHERE id IN (" U
                               ") AND coalesce(" TOTAL " > 500, 0) = 0"));
    assert_int_equal(count_of(c, "sx.hi"), count_of(c, "s.hi"));
    assert_int_equal(count_of(c, "sx.mid"),
                     sql_count("SELECT count(*) FROM profiles p WHERE id IN (" U ") AND " TOTAL
                               " > 500 AND " TOTAL " <= 1000"));
    assert_int_equal(count_of(c, "r.a"), (gold * 30 + 50) / 100);
    assert_int_equal(count_of(c, "r.a") + count_of(c, "r.b"), gold);
    assert_int_equal(count_of(c, "l.top"), 10);
    assert_int_equal(count_of(c, "l.rest"), gold - 10);
    long long ord =
        sql_count("SELECT count(*) FROM orders o JOIN profiles p ON p.id = o.profile_id "
                  "WHERE p.tier = 'gold' AND o.amount > 100");
    assert_int_equal(count_of(c, "ord"), ord);
    assert_int_equal(count_of(c, "st"),
                     sql_count("SELECT count(DISTINCT o.store_id) FROM orders o JOIN profiles p ON "
                               "p.id = o.profile_id WHERE p.tier = 'gold' AND o.amount > 100"));
    /* sends: one message per row; post needs an email and consent */
    assert_int_equal(count_of(c, "letters"), ord);
    json_t *ex = json_object_get(json_object_get(o, "excluded"), "posted");
    /* consent first, as the dispatcher decides, then the address */
    long long nocons = sql_count("SELECT count(*) FROM profiles WHERE id IN (" U
                                 ") AND coalesce(consent_email, 0) = 0");
    long long noaddr = sql_count("SELECT count(*) FROM profiles WHERE id IN (" U
                                 ") AND consent_email = 1 AND (email IS NULL OR email = '')");
    assert_int_equal(json_integer_value(json_object_get(ex, "no_address")), noaddr);
    assert_int_equal(json_integer_value(json_object_get(ex, "no_consent")), nocons);
    assert_int_equal(count_of(c, "posted"), count_of(c, "u") - noaddr - nocons);
    json_decref(o);
    free(out);
    free(err);

    /* the picture renders, with the counts on its edges */
    rc = baton(&out, &err, "campaign plan %s --dot", path);
    assert_int_equal(rc, 0);
    char label[64];
    snprintf(label, sizeof label, "\"gold\" -> \"u\" [label=\"%lld\"]", gold);
    assert_non_null(strstr(out, label));
    char *dotfile = file_write(dir, "t.dot", out);
    char *cmd;
    assert_true(asprintf(&cmd, "dot -Tsvg %s -o %s/t.svg", dotfile, dir) > 0);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    free(dotfile);
    free(out);
    free(err);
    unlink(path);
    free(path);
}

static void test_check_reports_every_error(void **st)
{
    char *path = file_write(
        dir, "campaigns/bad.cfg",
        "campaign: {\n"
        "  name = \"bad\";\n"
        "  activities = (\n"
        "    { id = \"a\"; type = \"build_audiance\"; dimension = \"profiles\"; },\n"
        "    { id = \"b\"; type = \"build_audience\"; dimension = \"profiles\";\n"
        "      filter = \"tierr == 'gold'\"; },\n"
        "    { id = \"c\"; type = \"combine\"; op = \"union\"; inputs = [ \"b\", \"zz\" ]; },\n"
        "    { id = \"d\"; type = \"send\"; channel = \"off\"; input = \"b\"; columns = [ \"id\" "
        "]; },\n"
        "    { id = \"e\"; type = \"send\"; channel = \"nope\"; input = \"b\"; columns = [ \"id\" "
        "]; },\n"
        "    { id = \"f\"; type = \"enrich\"; input = \"g\"; add = ( { name = \"n\"; value = "
        "\"1\"; } ); },\n"
        "    { id = \"g\"; type = \"enrich\"; input = \"f\"; add = ( { name = \"m\"; value = "
        "\"1\"; } ); },\n"
        "    { id = \"i\"; type = \"build_audience\"; dimension = \"profiles\"; },\n"
        "    { id = \"h\"; type = \"send\"; channel = \"noaddr\"; input = \"i\"; subject = \"s\"; "
        "text = \"t\"; },\n"
        "    { id = \"j\"; type = \"change_dimension\"; input = \"i\"; to = \"stores\"; },\n"
        "    { id = \"k\"; type = \"change_dimension\"; input = \"i\"; to = \"stores\";\n"
        "      through = [ \"reservations\", \"profiles\" ]; }\n"
        "  );\n};\n");
    char *out, *err;
    assert_int_equal(baton(&out, &err, "check"), 2);
    const char *want[] = {
        "bad.cfg:4: activity 'a': unknown type 'build_audiance' (did you mean 'build_audience'?)",
        "bad.cfg:7: activity 'c': input 'zz' names no activity of this campaign",
        "bad.cfg:10: the activities form a cycle: f -> g -> f",
        "bad.cfg:6: filter: 1:1: unknown field 'tierr'",
        "bad.cfg:8: activity 'd': channel 'off' is disabled",
        "bad.cfg:9: activity 'e': unknown channel 'nope'",
        /* an email channel without `address` failed every message at run time */
        "channels.noaddr: no `address`: name the profiles field that holds the recipient "
        "(address = \"email\"), or every message of activity 'h' fails",
        /* change_dimension: a path of links, or the entities it goes through */
        "bad.cfg:14: activity 'j': no link joins profiles and stores in the schema (through = [ "
        "... ] names the entities between them)",
        "bad.cfg:16: activity 'k': no link joins profiles and stores in the schema",
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        if (!strstr(err, want[i]))
            fail_msg("missing '%s' in:\n%s", want[i], err);
    free(out);
    free(err);
    assert_int_equal(baton(&out, &err, "campaign run %s", path), 2);
    assert_non_null(strstr(err, "nothing was sent"));
    free(out);
    free(err);
    unlink(path);
    free(path);
}

static long long csv_rows(const char *path, int *dups)
{
    char *text = file_read(path, NULL);
    if (!text)
        return -1;
    long long n = 0;
    *dups = 0;
    /* one row per line (the columns hold no newline); count repeats */
    char **seen = NULL;
    size_t ns = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        n++;
        for (size_t i = 0; i < ns; i++)
            if (!strcmp(seen[i], line))
                (*dups)++;
        seen = realloc(seen, (ns + 1) * sizeof *seen);
        seen[ns++] = line;
    }
    free(seen);
    free(text);
    return n - 1; /* the header */
}

static void test_run_export_and_resume_after_kill(void **st)
{
    char *path = file_write(
        dir, "campaigns/k.cfg",
        "campaign: {\n  name = \"k\";\n  activities = (\n"
        "    { id = \"all\"; type = \"build_audience\"; dimension = \"profiles\"; },\n"
        "    { id = \"ord\"; type = \"change_dimension\"; input = \"all\"; to = \"orders\"; },\n"
        "    { id = \"out\"; type = \"send\"; channel = \"slow\"; input = \"ord\";\n"
        "      columns = [ \"id\", \"profile.first_name\", \"store.name\", \"amount\" ]; }\n"
        "  );\n};\n");
    long long orders = sql_count("SELECT count(*) FROM orders");
    pid_t pid = fork();
    if (pid == 0) {
        freopen("/dev/null", "w", stderr);
        execl(bin, bin, "-c", cfg, "campaign", "run", path, (char *)NULL);
        _exit(127);
    }
    usleep(2500 * 1000); /* 15000 rows at 2500/s: well inside the send */
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    char *out, *err;
    int rc = baton(&out, &err, "campaign run k --resume");
    if (rc != 0)
        fail_msg("resume failed (%d): %s", rc, err);
    free(out);
    free(err);
    char *csv;
    assert_true(asprintf(&csv, "%s/var/slow/k-1-out.csv", dir) > 0);
    int dups = 0;
    long long rows = csv_rows(csv, &dups);
    assert_int_equal(rows, orders);
    assert_int_equal(dups, 0);
    /* multi-level: each order's row reads its profile and its store */
    char *text = file_read(csv, NULL), *cmd, *want = NULL, *e2 = NULL;
    assert_true(asprintf(&cmd,
                         "sqlite3 %s \"SELECT o.id || ',' || p.first_name || ',' || s.name || ',' "
                         "FROM orders o JOIN profiles p ON p.id = o.profile_id JOIN stores s ON "
                         "s.id = o.store_id WHERE o.id = 'o17'\"",
                         db) > 0);
    assert_int_equal(run_capture(cmd, &want, &e2), 0);
    want[strcspn(want, "\n")] = '\0';
    assert_true(strlen(want) > 5);
    assert_non_null(strstr(text, "id,profile.first_name,store.name,amount\r\n"));
    assert_non_null(strstr(text, want));
    free(cmd);
    free(want);
    free(e2);
    free(text);
    free(csv);
    assert_int_equal(baton(&out, &err, "campaign runs k --json"), 0);
    json_t *o = json_loads(out, 0, NULL);
    json_t *run = json_array_get(json_object_get(o, "runs"), 0);
    assert_string_equal(json_string_value(json_object_get(run, "status")), "done");
    json_decref(o);
    free(out);
    free(err);
    unlink(path);
    free(path);
}

static void test_audiences_and_reconcile(void **st)
{
    char *save = file_write(
        dir, "campaigns/sv.cfg",
        "campaign: {\n  name = \"sv\";\n  activities = (\n"
        "    { id = \"g\"; type = \"build_audience\"; dimension = \"profiles\"; filter = \"tier == "
        "'gold'\"; },\n"
        "    { id = \"keep\"; type = \"save_audience\"; input = \"g\"; name = \"golds\"; }\n"
        "  );\n};\n");
    char *out, *err;
    /* a plan saves nothing: reading it back is an error until a run */
    char *rd = file_write(dir, "campaigns/rd.cfg",
                          "campaign: {\n  name = \"rd\";\n  activities = (\n"
                          "    { id = \"back\"; type = \"read_audience\"; name = \"golds\"; }\n"
                          "  );\n};\n");
    assert_int_equal(baton(&out, &err, "campaign plan sv"), 0);
    free(out);
    free(err);
    assert_int_equal(baton(&out, &err, "campaign plan rd --json"), 2);
    assert_non_null(strstr(err, "rd.cfg:4: activity 'back': no audience 'golds' has been saved"));
    free(out);
    free(err);
    assert_int_equal(baton(&out, &err, "campaign run sv"), 0);
    free(out);
    free(err);
    assert_int_equal(baton(&out, &err, "campaign plan rd --json"), 0);
    json_t *o = json_loads(out, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "counts"), "back")),
                     sql_count("SELECT count(*) FROM profiles WHERE tier = 'gold'"));
    json_decref(o);
    free(out);
    free(err);

    /* reconcile: quoted fields, a line break inside quotes, a duplicate and
     * two lines that match nobody, reported by line */
    char *csv = file_write(dir, "campaigns/returns.csv",
                           "mail,note\r\n"
                           "user3@example.com,\"Jacket, blue\"\r\n"
                           "nobody@example.org,Scarf\r\n"
                           "user10@example.com,\"two\nlines\"\r\n"
                           "user3@example.com,again\r\n"
                           "ghost@example.net,Belt\r\n");
    char *rc = file_write(dir, "campaigns/rc.cfg",
                          "campaign: {\n  name = \"rc\";\n  activities = (\n"
                          "    { id = \"m\"; type = \"reconcile\"; file = \"returns.csv\"; "
                          "dimension = \"profiles\";\n"
                          "      column = \"mail\"; field = \"email\"; },\n"
                          "    { id = \"out\"; type = \"send\"; channel = \"mail\"; input = \"m\"; "
                          "columns = ( \"email\", \"note\", { name = \"len\"; value = "
                          "\"length(email)\"; } ); }\n"
                          "  );\n};\n");
    assert_int_equal(baton(&out, &err, "campaign plan rc"), 0);
    long long matched = sql_count("SELECT count(*) FROM profiles WHERE email IN "
                                  "('user3@example.com', 'user10@example.com')");
    char want[64];
    snprintf(want, sizeof want, "m=%lld", matched);
    assert_non_null(strstr(out, want));
    assert_non_null(strstr(out, "line 3: no profiles with email = 'nobody@example.org'"));
    assert_non_null(strstr(out, "line 7: no profiles with email = 'ghost@example.net'"));
    free(out);
    free(err);
    assert_int_equal(baton(&out, &err, "campaign run rc"), 0);
    free(out);
    free(err);
    char *path;
    assert_true(asprintf(&path, "%s/var/exports/rc-3-out.csv", dir) > 0);
    char *text = file_read(path, NULL);
    assert_non_null(text);
    /* a named column: its name heads it */
    assert_non_null(strstr(text, "email,note,len\r\n"));
    assert_non_null(strstr(text, "user3@example.com,\"Jacket, blue\",17\r\n"));
    free(text);
    free(path);
    unlink(save);
    unlink(rd);
    unlink(rc);
    unlink(csv);
    free(save);
    free(rd);
    free(rc);
    free(csv);
}

/* A run where some messages fail for good says so: it is done, but
 * exits 1 with the counts, and `campaign runs` has them from the delivery
 * log (nothing pending, nothing uncertain). The SMS gateway (the HTTP
 * sink) refuses numbers ending in 7 with 400. */
static void test_failed_messages_fail_the_run(void **st)
{
    char *sink;
    assert_true(asprintf(&sink, "%s/tests/support/http_sink.py", src) > 0);
    char *argv[] = {"/usr/bin/python3", sink, "--match", "7\"=400", NULL};
    test_server srv;
    assert_int_equal(server_start_ready(&srv, argv, 15000), 0);
    char *text = file_read(cfg, NULL), *cfg2 = NULL, *body = NULL;
    /* the same configuration, with an SMS channel on the sink */
    char *at = strstr(text, "channels: {\n");
    assert_non_null(at);
    at += strlen("channels: {\n");
    assert_true(asprintf(&body,
                         "%.*s  sms: { plugin = \"channel_sms\"; url = \"http://127.0.0.1:%d/sms\";"
                         " address = \"phone\"; consent = \"consent_sms\"; };\n%s",
                         (int)(at - text), text, srv.port, at) > 0);
    cfg2 = file_write(dir, "baton-sms.cfg", body);
    char *path = file_write(
        dir, "campaigns/dead.cfg",
        "campaign: {\n  name = \"dead\";\n  activities = (\n"
        "    { id = \"g\"; type = \"build_audience\"; dimension = \"profiles\"; filter = \"tier == "
        "'gold'\"; },\n"
        "    { id = \"m\"; type = \"send\"; channel = \"sms\"; input = \"g\";\n"
        "      text = \"Hi {{ first_name }}\"; }\n"
        "  );\n};\n");
    const char *W = "FROM profiles WHERE tier = 'gold' AND consent_sms = 1 AND phone IS NOT NULL"
                    " AND phone != ''";
    char *q1, *q2;
    assert_true(asprintf(&q1, "SELECT count(*) %s", W) > 0);
    assert_true(asprintf(&q2, "SELECT count(*) %s AND phone LIKE '%%7'", W) > 0);
    long long n = sql_count(q1), bad = sql_count(q2);
    assert_true(bad > 0 && n > bad);
    char *saved = cfg;
    cfg = cfg2;
    char *out, *err;
    int rc = baton(&out, &err, "campaign run dead");
    char want[200];
    snprintf(want, sizeof want, " done with %lld message(s) failed and 0 uncertain", bad);
    if (rc != 1 || !strstr(err, want) || !strstr(err, "campaign dead: run "))
        fail_msg("exit %d, missing '%s' in:\n%s", rc, want, err);
    free(out);
    free(err);
    assert_int_equal(baton(&out, &err, "campaign runs dead --json"), 0);
    cfg = saved;
    json_t *o = json_loads(out, 0, NULL);
    json_t *run = json_array_get(json_object_get(o, "runs"), 0);
    assert_string_equal(json_string_value(json_object_get(run, "status")), "done");
    json_t *m = json_array_get(json_object_get(run, "activities"), 1);
    assert_string_equal(json_string_value(json_object_get(m, "id")), "m");
    assert_int_equal(json_integer_value(json_object_get(m, "sent")), n - bad);
    assert_int_equal(json_integer_value(json_object_get(m, "failed")), bad);
    assert_int_equal(json_integer_value(json_object_get(m, "uncertain")), 0);
    assert_int_equal(json_integer_value(json_object_get(m, "pending")), 0);
    json_decref(o);
    free(out);
    free(err);
    server_stop(&srv);
    unlink(path);
    free(path);
    free(cfg2);
    free(body);
    free(text);
    free(q1);
    free(q2);
    free(sink);
}

static void test_multi_level_email_templates(void **st)
{
    char *tpl = file_write(dir, "campaigns/order.html",
                           "<p>Hi <b>{{ profile.first_name }}</b>, "
                           "{{ amount }} at {{ store.name }}</p>\n");
    char *path = file_write(
        dir, "campaigns/em.cfg",
        "campaign: {\n  name = \"em\";\n  activities = (\n"
        "    { id = \"g\"; type = \"build_audience\"; dimension = \"profiles\"; filter = \"tier == "
        "'gold'\"; },\n"
        "    { id = \"o\"; type = \"change_dimension\"; input = \"g\"; to = \"orders\"; filter = "
        "\"amount > 250\"; },\n"
        "    { id = \"m\"; type = \"send\"; channel = \"email\"; input = \"o\";\n"
        "      subject = \"Your order at {{ store.name }}\";\n"
        "      text = \"Hi {{ profile.first_name }}, {{ amount }} in {{ store.city }}\";\n"
        "      html_file = \"order.html\"; }\n"
        "  );\n};\n");
    char *out, *err;
    assert_int_equal(baton(&out, &err, "campaign plan em --json"), 0);
    json_t *o = json_loads(out, 0, NULL);
#define ORD                                                                                        \
    "FROM orders o JOIN profiles p ON p.id = o.profile_id WHERE p.tier = 'gold' AND o.amount > "   \
    "250"
    long long total = sql_count("SELECT count(*) " ORD);
    long long nocons = sql_count("SELECT count(*) " ORD " AND coalesce(p.consent_email, 0) = 0");
    long long noaddr = sql_count("SELECT count(*) " ORD
                                 " AND p.consent_email = 1 AND (p.email IS NULL OR p.email = '')");
    assert_true(total > 0 && nocons > 0);
    json_t *c = json_object_get(o, "counts");
    assert_int_equal(count_of(c, "o"), total);
    assert_int_equal(count_of(c, "m"), total - noaddr - nocons);
    json_t *ex = json_object_get(json_object_get(o, "excluded"), "m");
    assert_int_equal(json_integer_value(json_object_get(ex, "no_consent")), nocons);
    assert_int_equal(json_integer_value(json_object_get(ex, "no_address")), noaddr);
    json_decref(o);
    free(out);
    free(err);
    /* a dry run renders every message (templates over three entities) and
     * delivers none: nothing listens on port 9 */
    assert_int_equal(baton(&out, &err, "campaign run em --dry-run"), 0);
    char want[160];
    snprintf(
        want, sizeof want,
        "%lld rendered (dry run, nothing delivered), 0 capped, %lld no address, %lld no consent",
        total - noaddr - nocons, noaddr, nocons);
    if (!strstr(err, want))
        fail_msg("missing '%s' in:\n%s", want, err);
    free(out);
    free(err);
    /* a part the channel does not have, suggested */
    char *bad =
        file_write(dir, "campaigns/em.cfg",
                   "campaign: {\n  name = \"em\";\n  activities = (\n"
                   "    { id = \"g\"; type = \"build_audience\"; dimension = \"profiles\"; },\n"
                   "    { id = \"m\"; type = \"send\"; channel = \"email\"; input = \"g\";\n"
                   "      subjct = \"Hi\"; text = \"{{ first_nam }}\"; }\n"
                   "  );\n};\n");
    assert_int_equal(baton(&out, &err, "campaign plan em"), 2);
    assert_non_null(strstr(err, "em.cfg:6: activity 'm': unknown key 'subjct' for a send on "
                                "channel 'email' (did you mean 'subject'?)"));
    assert_non_null(strstr(err, "em.cfg:6: text: 1:4: unknown field 'first_nam'"));
    free(out);
    free(err);
    unlink(path);
    unlink(tpl);
    free(bad);
    free(path);
    free(tpl);
}

static void test_wait_holds_the_run_and_proofs(void **st)
{
    char *path =
        file_write(dir, "campaigns/w.cfg",
                   "campaign: {\n  name = \"w\";\n  activities = (\n"
                   "    { id = \"g\"; type = \"build_audience\"; dimension = \"profiles\"; filter "
                   "= \"tier == 'gold'\"; },\n"
                   "    { id = \"hold\"; type = \"wait\"; input = \"g\"; duration = \"2h\"; },\n"
                   "    { id = \"out\"; type = \"send\"; channel = \"mail\"; input = \"hold\"; "
                   "columns = [ \"id\" ]; }\n"
                   "  );\n};\n");
    char *out, *err;
    /* a plan does not wait */
    assert_int_equal(baton(&out, &err, "campaign plan w --json"), 0);
    assert_non_null(strstr(out, "\"out\": "));
    free(out);
    free(err);
    /* a run stops at the wait, recorded as waiting; resuming early waits on */
    assert_int_equal(baton(&out, &err, "campaign run w"), 0);
    assert_non_null(strstr(err, "waits at 'hold' until"));
    free(out);
    free(err);
    assert_int_equal(baton(&out, &err, "campaign runs w --json"), 0);
    json_t *o = json_loads(out, 0, NULL);
    json_t *run = json_array_get(json_object_get(o, "runs"), 0);
    assert_string_equal(json_string_value(json_object_get(run, "status")), "waiting");
    assert_int_equal(json_array_size(json_object_get(run, "activities")), 1);
    json_decref(o);
    free(out);
    free(err);
    assert_int_equal(baton(&out, &err, "campaign run w --resume"), 0);
    assert_non_null(strstr(err, "waits at 'hold' until"));
    free(out);
    free(err);
    /* proofs: a few rendered samples to the test addresses, nothing logged */
    assert_int_equal(baton(&out, &err, "campaign run w --proof a@example.com b@example.com"), 0);
    assert_non_null(strstr(err, "6 proof(s) sent to 2 address(es)"));
    free(out);
    free(err);
    unlink(path);
    free(path);
}

static void test_schema_checked_against_the_database(void **st)
{
    /* a database whose profiles lack `score` and that has no stores */
    char *cmd;
    assert_true(
        asprintf(&cmd,
                 "sqlite3 %s/other.db \"CREATE TABLE profiles (id TEXT, email TEXT, phone TEXT, "
                 "first_name TEXT, city TEXT, tier TEXT, birth_date TEXT, created_at TEXT, "
                 "consent_email INT, consent_sms INT, consent_push INT, scor REAL); "
                 "CREATE TABLE orders (id TEXT, profile_id TEXT, store_id TEXT, amount REAL, "
                 "created_at TEXT); CREATE TABLE reservations (id TEXT, profile_id TEXT, "
                 "store_id TEXT, starts_at TEXT, party INT, status TEXT);\"",
                 dir) > 0);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    char *text, *path;
    assert_true(
        asprintf(&text,
                 "baton: { data_dir = \"var2\"; plugin_path = [ \"%s\" ]; };\n"
                 "sources: { crm: { plugin = \"source_sqlite\"; path = \"other.db\"; schema = "
                 "\"%s/conf/schema.cfg\"; }; };\n"
                 "profiles = \"crm\";\n"
                 "channels: { mail: { plugin = \"channel_directmail\"; dir = \"var2/x\"; }; };\n",
                 plugins, src) > 0);
    char *other = file_write(dir, "other.cfg", text);
    free(text);
    path = file_write(dir, "one.cfg",
                      "campaign: {\n  name = \"one\";\n  activities = (\n"
                      "    { id = \"g\"; type = \"build_audience\"; dimension = \"profiles\"; }\n"
                      "  );\n};\n");
    char *out, *err;
    assert_true(asprintf(&cmd, "%s -c %s campaign plan %s", bin, other, path) > 0);
    assert_int_equal(run_capture(cmd, &out, &err), 2);
    assert_non_null(strstr(err, "field profiles.score: table 'profiles' of source 'crm' has no "
                                "column 'score' (it has 'scor')"));
    assert_non_null(strstr(err, "entity 'stores': source 'crm' has no table 'stores'"));
    free(cmd);
    free(out);
    free(err);
    free(other);
    free(path);
}

/* baton check reads a sample of the data: values that do not fit their
 * field, keys that are not unique, links without an index. */
static void test_check_reads_the_data(void **st)
{
    char *cmd;
    assert_true(
        asprintf(
            &cmd,
            "sqlite3 %s/third.db \"CREATE TABLE profiles (id TEXT, email TEXT, phone TEXT, "
            "first_name TEXT, city TEXT, tier TEXT, birth_date TEXT, created_at TEXT, "
            "consent_email INT, consent_sms INT, consent_push INT, score REAL); "
            "INSERT INTO profiles (id, consent_email, score) VALUES ('p1', 1, 2.5), ('p2', 2, 1), "
            "('p1', 0, 3); "
            "CREATE TABLE orders (id TEXT PRIMARY KEY, profile_id, store_id TEXT, amount, "
            "created_at TEXT); INSERT INTO orders VALUES ('o1', 7, 's1', 'n/a', "
            "'2026-01-02T00:00:00Z'); "
            "CREATE TABLE stores (id TEXT PRIMARY KEY, city TEXT, name TEXT); "
            "CREATE TABLE reservations (id TEXT PRIMARY KEY, profile_id TEXT, store_id TEXT, "
            "starts_at TEXT, party INT, status TEXT); "
            "CREATE INDEX r_p ON reservations (profile_id); CREATE INDEX r_s ON reservations "
            "(store_id); CREATE INDEX o_s ON orders (store_id);\"",
            dir) > 0);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    char *text;
    assert_true(
        asprintf(&text,
                 "baton: { data_dir = \"var3\"; plugin_path = [ \"%s\" ]; };\n"
                 "sources: { crm: { plugin = \"source_sqlite\"; path = \"third.db\"; schema = "
                 "\"%s/conf/schema.cfg\"; }; };\n"
                 "profiles = \"crm\";\n"
                 "channels: { mail: { plugin = \"channel_directmail\"; dir = \"var3/x\"; }; };\n"
                 "campaigns = [ \"c3\" ];\n",
                 plugins, src) > 0);
    char *third = file_write(dir, "third.cfg", text);
    free(text);
    char *c3;
    assert_true(asprintf(&c3, "%s/c3", dir) > 0);
    mkdir(c3, 0755);
    free(c3);
    free(file_write(dir, "c3/one.cfg",
                    "campaign: {\n  name = \"one\";\n  activities = (\n"
                    "    { id = \"g\"; type = \"build_audience\"; dimension = \"profiles\"; }\n"
                    "  );\n};\n"));
    char *out, *err;
    assert_true(asprintf(&cmd, "%s -c %s check", bin, third) > 0);
    assert_int_equal(run_capture(cmd, &out, &err), 2);
    static const char *const want[] = {
        "conf/schema.cfg:10: field profiles.consent_email is a bool, but column 'consent_email' of "
        "table 'profiles' of source 'crm' holds '2' (an integer)",
        "conf/schema.cfg:8: entity 'profiles': key 'id' is not unique in table 'profiles' of "
        "source 'crm': 'p1' is the key of 2 rows",
        "conf/schema.cfg:15: field orders.profile_id is a string, but column 'profile_id' of "
        "table 'orders' of source 'crm' holds '7' (an integer)",
        "conf/schema.cfg:16: field orders.amount is a float, but column 'amount' of table "
        "'orders' of source 'crm' holds 'n/a' (text)",
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        if (!strstr(err, want[i]))
            fail_msg("missing: %s\nin:\n%s", want[i], err);
    free(cmd);
    free(out);
    free(err);
    /* the data fixed, the links without an index are warnings with the
     * statement to run */
    assert_true(asprintf(&cmd,
                         "sqlite3 %s/third.db \"DELETE FROM profiles WHERE consent_email <> 1; "
                         "UPDATE orders SET profile_id = 'p1', amount = 3.5;\"",
                         dir) > 0);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    assert_true(asprintf(&cmd, "%s -c %s check", bin, third) > 0);
    assert_int_equal(run_capture(cmd, &out, &err), 0);
    const char *ix = "conf/schema.cfg:17: warning: link orders.profile: table 'orders' of source "
                     "'crm' has no index on 'profile_id': journeys, templates and linked fields "
                     "look rows up by it, each lookup a scan of the table; run CREATE INDEX "
                     "\"orders_profile_id\" ON \"orders\" (\"profile_id\");";
    if (!strstr(err, ix))
        fail_msg("missing: %s\nin:\n%s", ix, err);
    assert_null(strstr(err, "no index on 'store_id'"));
    free(cmd);
    free(out);
    free(err);
    free(third);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_matches_hand_written_sql),
        cmocka_unit_test(test_check_reports_every_error),
        cmocka_unit_test(test_run_export_and_resume_after_kill),
        cmocka_unit_test(test_audiences_and_reconcile),
        cmocka_unit_test(test_multi_level_email_templates),
        cmocka_unit_test(test_failed_messages_fail_the_run),
        cmocka_unit_test(test_wait_holds_the_run_and_proofs),
        cmocka_unit_test(test_schema_checked_against_the_database),
        cmocka_unit_test(test_check_reads_the_data),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
