/* Control activities end to end through the binary, on the sample data:
 * test (the whole input to one output, decided by the run's figures and
 * parameters), or_join (each row once), each with its check errors at
 * file:line. Counts are compared with sqlite3 on the same database. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support/fs.h"
#include "support/server.h"

static const char *bin, *src, *plugins;
static char *dir, *cfg, *db;
static test_server sink; /* SMTP: the operator's mailbox for alerts */

static int baton(char **out, char **err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = run_baton_v(NULL, cfg, out, err, fmt, ap);
    va_end(ap);
    return rc;
}

static long long sql_count(const char *sql)
{
    char *cmd, *out = NULL, *err = NULL;
    if (asprintf(&cmd, "sqlite3 %s \"%s\"", db, sql) < 0)
        abort();
    if (run_capture(cmd, &out, &err) != 0)
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
    dir = tmpdir_make("campaign-control");
    char sinkdir[1024];
    snprintf(sinkdir, sizeof sinkdir, "%s/smtp", dir);
    char *mk;
    if (asprintf(&mk, "mkdir -p %s", sinkdir) < 0 || system(mk) != 0)
        abort();
    free(mk);
    char *argv[] = {"/usr/bin/python3", NULL, "--dir", sinkdir, NULL};
    if (asprintf(&argv[1], "%s/tests/support/smtp_sink.py", src) < 0)
        abort();
    int started = server_start_ready(&sink, argv, 15000);
    free(argv[1]);
    if (started != 0)
        return -1;
    char *text;
    if (asprintf(&text,
                 "baton: { data_dir = \"var\"; plugin_path = [ \"%s\" ]; log = { level = "
                 "\"warn\"; }; };\n"
                 "sources: { crm: { plugin = \"source_sqlite\"; path = \"var/crm.db\"; schema = "
                 "\"%s/conf/schema.cfg\"; }; };\n"
                 "profiles = \"crm\";\n"
                 "channels: { mail: { plugin = \"channel_directmail\"; dir = \"var/exports\"; };\n"
                 /* a folder it cannot make: the run fails at the send */
                 "  broken: { plugin = \"channel_directmail\"; dir = \"/proc/baton-none\"; };\n"
                 "  email: { plugin = \"channel_email\"; port = %d; from = \"baton "
                 "<baton@example.com>\"; address = \"email\"; consent = \"consent_email\"; };\n"
                 "};\n"
                 "campaigns = [ \"campaigns\" ];\n",
                 plugins, src, sink.port) < 0)
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
    int rc = baton(&out, &err, "sample-data --profiles 2000 --seed 11");
    free(out);
    free(err);
    return rc;
}

static int teardown(void **st)
{
    server_stop(&sink);
    tmpdir_remove(dir);
    free(dir);
    free(cfg);
    free(db);
    return 0;
}

static json_int_t count_of(json_t *counts, const char *name)
{
    json_t *v = json_object_get(counts, name);
    if (!v)
        fail_msg("no count for '%s'", name);
    return json_integer_value(v);
}

/* The counts of the latest run of a campaign, activity by activity. */
static json_t *last_run_counts(const char *name)
{
    char *out, *err;
    assert_int_equal(baton(&out, &err, "campaign runs %s --json", name), 0);
    json_t *o = json_loads(out, 0, NULL);
    assert_non_null(o);
    json_t *run = json_array_get(json_object_get(o, "runs"), 0);
    json_t *all = json_object();
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(run, "activities"), i, a)
    {
        json_object_update(all, json_object_get(a, "counts"));
        if (json_object_get(a, "sent"))
            json_object_set(all, json_string_value(json_object_get(a, "id")),
                            json_object_get(a, "sent"));
    }
    json_decref(o);
    free(out);
    free(err);
    return all;
}

#define GOLD "SELECT count(*) FROM profiles WHERE tier = 'gold'"

static const char test_campaign[] =
    "campaign: {\n"
    "  name = \"tt\";\n"
    "  parameters = ( { name = \"min\"; type = \"int\"; default = \"100000\"; } );\n"
    "  activities = (\n"
    "    { id = \"all\"; type = \"build_audience\"; dimension = \"profiles\"; },\n"
    "    { id = \"gold\"; type = \"build_audience\"; dimension = \"profiles\"; filter = \"tier == "
    "'gold'\"; },\n"
    "    { id = \"both\"; type = \"combine\"; op = \"intersection\"; inputs = [ \"gold\", "
    "\"all\" ]; },\n"
    /* count(input), a parameter, an upstream count and now() together */
    "    { id = \"t\"; type = \"test\"; input = \"both\";\n"
    "      when = \"count(input) > param.min and count(all) > 0 and weekday(now()) >= 0\"; },\n"
    "    { id = \"big\"; type = \"send\"; channel = \"mail\"; input = \"t.then\"; columns = [ "
    "\"id\" ]; },\n"
    "    { id = \"small\"; type = \"send\"; channel = \"mail\"; input = \"t.else\"; columns = [ "
    "\"id\" ]; }\n"
    "  );\n};\n";

static void test_test_sends_the_whole_input_one_way(void **st)
{
    char *path = file_write(dir, "campaigns/tt.cfg", test_campaign);
    long long gold = sql_count(GOLD);
    assert_true(gold > 0);
    char *out, *err;
    /* the plan, with the default (more than there are rows): every row
     * to t.else, and both counts shown */
    assert_int_equal(baton(&out, &err, "campaign plan tt --json"), 0);
    json_t *o = json_loads(out, 0, NULL);
    json_t *c = json_object_get(o, "counts");
    assert_int_equal(count_of(c, "t.then"), 0);
    assert_int_equal(count_of(c, "t.else"), gold);
    assert_int_equal(count_of(c, "big"), 0);
    assert_int_equal(count_of(c, "small"), gold);
    json_decref(o);
    free(out);
    free(err);
    /* a run given a lower minimum takes the other way */
    assert_int_equal(baton(&out, &err, "campaign run tt --param min=%lld", gold - 1), 0);
    free(out);
    free(err);
    c = last_run_counts("tt");
    assert_int_equal(count_of(c, "t.then"), gold);
    assert_int_equal(count_of(c, "t.else"), 0);
    assert_int_equal(count_of(c, "big"), gold);
    assert_int_equal(count_of(c, "small"), 0);
    json_decref(c);
    /* exactly the minimum is not more than it */
    assert_int_equal(baton(&out, &err, "campaign run tt --param min=%lld", gold), 0);
    free(out);
    free(err);
    c = last_run_counts("tt");
    assert_int_equal(count_of(c, "t.then"), 0);
    assert_int_equal(count_of(c, "small"), gold);
    json_decref(c);
    unlink(path);
    free(path);
}

static void test_test_errors(void **st)
{
    char *path = file_write(
        dir, "campaigns/bad.cfg",
        "campaign: {\n"
        "  name = \"bad\";\n"
        "  activities = (\n"
        "    { id = \"g\"; type = \"build_audience\"; dimension = \"profiles\"; },\n"
        "    { id = \"t1\"; type = \"test\"; input = \"g\"; when = \"count(input) + 1\"; },\n"
        "    { id = \"t2\"; type = \"test\"; input = \"g\"; when = \"count(nope) > 1\"; },\n"
        "    { id = \"t3\"; type = \"test\"; input = \"g\"; when = \"tier == 'gold'\"; },\n"
        "    { id = \"t4\"; type = \"test\"; input = \"g\"; when = \"count(t1.then) > 1\"; },\n"
        "    { id = \"t5\"; type = \"test\"; inputs = [ \"g\", \"g\" ]; when = \"true\"; },\n"
        "    { id = \"t6\"; type = \"test\"; input = \"g\"; },\n"
        "    { id = \"t7\"; type = \"test\"; input = \"g\"; when = \"'count(input)'\"; },\n"
        "    { id = \"t8\"; type = \"test\"; input = \"g\"; when = \"true\"; },\n"
        "    { id = \"s\"; type = \"send\"; channel = \"mail\"; input = \"t8\"; columns = [ "
        "\"id\" ]; }\n"
        "  );\n};\n");
    char *out, *err;
    assert_int_equal(baton(&out, &err, "check"), 2);
    static const char *const want[] = {
        "bad.cfg:5: when: 1:1: expected a condition (true or false), but this is an int",
        "bad.cfg:6: activity 't2': when: 1:1: count(nope): 'nope' is no transition before "
        "this test",
        "bad.cfg:7: when: 1:1: unknown name 'tier'",
        /* t1 is beside t4, not before it */
        "bad.cfg:8: activity 't4': when: 1:1: count(t1.then): 't1.then' is no transition",
        "bad.cfg:9: activity 't5': a test takes one input",
        "bad.cfg:10: activity 't6': missing required key 'when'",
        /* a quoted count( is text: a string, not a condition */
        "bad.cfg:11: when: 1:1: expected a condition (true or false), but this is a string",
        "bad.cfg:13: activity 's': input 't8' has several outputs; name one: t8.then, t8.else",
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        if (!strstr(err, want[i]))
            fail_msg("missing: %s\nin:\n%s", want[i], err);
    /* said once each */
    assert_null(strstr(strstr(err, "'t6'") + 1, "'t6'"));
    free(out);
    free(err);
    unlink(path);
    free(path);
}

static void test_or_join_passes_each_row_once(void **st)
{
    char *path = file_write(
        dir, "campaigns/oj.cfg",
        "campaign: {\n"
        "  name = \"oj\";\n"
        "  activities = (\n"
        "    { id = \"gold\"; type = \"build_audience\"; dimension = \"profiles\"; filter = \"tier "
        "== 'gold'\"; },\n"
        "    { id = \"rich\"; type = \"build_audience\"; dimension = \"profiles\"; filter = "
        "\"score > 50\"; },\n"
        "    { id = \"e\"; type = \"enrich\"; input = \"gold\"; add = ( { name = \"n\"; value = "
        "\"count(orders)\"; } ); },\n"
        "    { id = \"j\"; type = \"or_join\"; inputs = [ \"e\", \"rich\" ]; },\n"
        "    { id = \"out\"; type = \"send\"; channel = \"mail\"; input = \"j\"; columns = [ "
        "\"id\", \"n\" ]; }\n"
        "  );\n};\n");
    long long gold = sql_count(GOLD);
    long long rich = sql_count("SELECT count(*) FROM profiles WHERE score > 50");
    long long both = sql_count("SELECT count(*) FROM profiles WHERE score > 50 AND tier = 'gold'");
    assert_true(both > 0 && both < gold && both < rich);
    char *out, *err;
    assert_int_equal(baton(&out, &err, "campaign run oj"), 0);
    free(out);
    free(err);
    json_t *c = last_run_counts("oj");
    assert_int_equal(count_of(c, "j"), gold + rich - both);
    assert_int_equal(count_of(c, "out"), gold + rich - both);
    json_decref(c);
    /* a row in both inputs comes from the first, with its column; rows of
     * the second alone have it null */
    char *csv, *glob;
    assert_true(asprintf(&glob, "ls %s/var/exports/oj-*-out.csv", dir) > 0);
    assert_int_equal(run_capture(glob, &csv, NULL), 0);
    csv[strcspn(csv, "\n")] = '\0';
    char *text = file_read(csv, NULL);
    assert_non_null(text);
    size_t lines = 0, empty_n = 0;
    for (char *p = strchr(text, '\n'); p && p[1]; p = strchr(p + 1, '\n')) {
        lines++;
        char *eol = strchr(p + 1, '\n');
        empty_n += eol && eol[-1] == '\r' && eol[-2] == ','; /* RFC 4180: CRLF */
    }
    assert_int_equal(lines, gold + rich - both);
    assert_int_equal(empty_n, rich - both);
    free(text);
    free(csv);
    free(glob);
    unlink(path);
    free(path);
    /* one input is an error */
    path = file_write(dir, "campaigns/oj1.cfg",
                      "campaign: {\n"
                      "  name = \"oj1\";\n"
                      "  activities = (\n"
                      "    { id = \"g\"; type = \"build_audience\"; dimension = \"profiles\"; },\n"
                      "    { id = \"j\"; type = \"or_join\"; inputs = [ \"g\" ]; },\n"
                      "    { id = \"o\"; type = \"or_join\"; inputs = [ \"g\", \"ord\" ]; },\n"
                      "    { id = \"ord\"; type = \"change_dimension\"; input = \"g\"; to = "
                      "\"orders\"; }\n"
                      "  );\n};\n");
    assert_int_equal(baton(&out, &err, "check"), 2);
    const char *one = "oj1.cfg:5: activity 'j': an or_join takes two inputs or more";
    const char *dim = "oj1.cfg:6: activity 'o': every input must be of one dimension ('profiles' "
                      "and 'orders')";
    if (!strstr(err, one) || !strstr(err, dim))
        fail_msg("missing: %s / %s\nin:\n%s", one, dim, err);
    free(out);
    free(err);
    unlink(path);
    free(path);
}

static void test_end_starts_another_campaign(void **st)
{
    char *a = file_write(
        dir, "campaigns/ca.cfg",
        "campaign: {\n"
        "  name = \"ca\";\n"
        "  activities = (\n"
        "    { id = \"g\"; type = \"build_audience\"; dimension = \"profiles\"; filter = \"tier == "
        "'gold'\"; },\n"
        "    { id = \"t\"; type = \"test\"; input = \"g\"; when = \"count(input) > 0\"; },\n"
        "    { id = \"yes\"; type = \"end\"; input = \"t.then\"; start = \"cb\"; parameters = { "
        "tier = \"silver\"; n = 2; }; },\n"
        /* no row reaches this one: it starts nothing */
        "    { id = \"no\"; type = \"end\"; input = \"t.else\"; start = \"cb\"; parameters = { "
        "tier = \"bronze\"; }; }\n"
        "  );\n};\n");
    char *b = file_write(dir, "campaigns/cb.cfg",
                         "campaign: {\n"
                         "  name = \"cb\";\n"
                         "  parameters = ( { name = \"tier\"; type = \"string\"; default = "
                         "\"gold\"; },\n"
                         "                 { name = \"n\"; type = \"int\"; default = \"1\"; } );\n"
                         "  activities = (\n"
                         "    { id = \"g\"; type = \"build_audience\"; dimension = \"profiles\"; "
                         "filter = \"tier == param.tier and param.n == 2\"; },\n"
                         "    { id = \"x\"; type = \"send\"; channel = \"mail\"; input = \"g\"; "
                         "columns = [ \"id\" ]; }\n"
                         "  );\n};\n");
    char *out, *err;
    assert_int_equal(baton(&out, &err, "check"), 0);
    free(out);
    free(err);
    assert_int_equal(baton(&out, &err, "campaign run ca"), 0);
    assert_non_null(strstr(err, "end 'yes' starts campaign cb"));
    assert_null(strstr(err, "end 'no'"));
    free(out);
    free(err);
    assert_int_equal(baton(&out, &err, "campaign runs cb --json"), 0);
    json_t *o = json_loads(out, 0, NULL);
    json_t *runs = json_object_get(o, "runs");
    assert_int_equal(json_array_size(runs), 1); /* started once */
    json_t *run = json_array_get(runs, 0);
    assert_string_equal(json_string_value(json_object_get(run, "trigger")), "chain");
    assert_string_equal(json_string_value(json_object_get(run, "status")), "done");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(run, "parameters"), "tier")), "silver");
    json_decref(o);
    free(out);
    free(err);
    json_t *c = last_run_counts("cb");
    assert_int_equal(count_of(c, "x"), sql_count("SELECT count(*) FROM profiles WHERE tier = "
                                                 "'silver'"));
    json_decref(c);
    /* errors: a cycle (cb back to ca), parameters cb does not declare or
     * of another type, an unknown campaign, parameters without start */
    free(b);
    b = file_write(dir, "campaigns/cb.cfg",
                   "campaign: {\n"
                   "  name = \"cb\";\n"
                   "  parameters = ( { name = \"tier\"; type = \"string\"; default = \"gold\"; } "
                   ");\n"
                   "  activities = (\n"
                   "    { id = \"g\"; type = \"build_audience\"; dimension = \"profiles\"; },\n"
                   "    { id = \"back\"; type = \"end\"; input = \"g\"; start = \"ca\"; },\n"
                   "    { id = \"z\"; type = \"end\"; input = \"g\"; start = \"nowhere\"; },\n"
                   "    { id = \"p\"; type = \"end\"; input = \"g\"; parameters = { a = 1; }; },\n"
                   "    { id = \"q\"; type = \"end\"; input = \"g\"; start = \"ca\"; parameters = "
                   "[ 1 ]; },\n"
                   "    { id = \"typo\"; type = \"end\"; input = \"g\"; start = \"cq\"; }\n"
                   "  );\n};\n");
    assert_int_equal(baton(&out, &err, "check"), 2);
    static const char *const want[] = {
        "ca.cfg:6: activity 'yes': start = \"cb\": parameters: n is not a parameter of it",
        "ca.cfg:7: activity 'no': the campaigns form a cycle: ca -> cb -> ca",
        "cb.cfg:6: activity 'back': the campaigns form a cycle: cb -> ca -> cb",
        "cb.cfg:7: activity 'z': start = \"nowhere\": no campaign named 'nowhere' in the "
        "configured campaigns",
        "cb.cfg:10: activity 'typo': start = \"cq\": no campaign named 'cq' in the configured "
        "campaigns (did you mean 'ca'?)",
        "cb.cfg:8: activity 'p': parameters are those of the campaign `start` names",
        "cb.cfg:9: activity 'q': parameters must be a group { NAME = value; ... }",
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        if (!strstr(err, want[i]))
            fail_msg("missing: %s\nin:\n%s", want[i], err);
    free(out);
    free(err);
    /* a run refuses to start as check does */
    assert_int_equal(baton(&out, &err, "campaign run cb"), 2);
    free(out);
    free(err);
    unlink(a);
    unlink(b);
    free(a);
    free(b);
}

static long long state_count(const char *sql)
{
    char *cmd, *out = NULL;
    if (asprintf(&cmd, "sqlite3 %s/var/state.db \"%s\"", dir, sql) < 0)
        abort();
    if (run_capture(cmd, &out, NULL) != 0)
        fail_msg("sqlite3 failed: %s", sql);
    long long n = atoll(out);
    free(cmd);
    free(out);
    return n;
}

static void sql_exec(const char *sql)
{
    char *cmd;
    if (asprintf(&cmd, "sqlite3 %s \"%s\"", db, sql) < 0)
        abort();
    assert_int_equal(system(cmd), 0);
    free(cmd);
}

static void test_incremental_audience_targets_each_row_once(void **st)
{
    char *path = file_write(
        dir, "campaigns/inc.cfg",
        "campaign: {\n"
        "  name = \"inc\";\n"
        "  retention = \"30d\";\n"
        "  activities = (\n"
        "    { id = \"g\"; type = \"build_audience\"; dimension = \"profiles\"; filter = \"city == "
        "'Lyon'\"; incremental = true; },\n"
        "    { id = \"x\"; type = \"send\"; channel = \"mail\"; input = \"g\"; columns = [ \"id\" "
        "]; }\n"
        "  );\n};\n");
    long long lyon = sql_count("SELECT count(*) FROM profiles WHERE city = 'Lyon'");
    assert_true(lyon > 3);
    char *out, *err;
    /* a plan and a dry run target no one */
    assert_int_equal(baton(&out, &err, "campaign plan inc --json"), 0);
    json_t *o = json_loads(out, 0, NULL);
    assert_int_equal(count_of(json_object_get(o, "counts"), "g"), lyon);
    json_decref(o);
    free(out);
    free(err);
    assert_int_equal(baton(&out, &err, "campaign run inc --dry-run"), 0);
    free(out);
    free(err);
    assert_int_equal(baton(&out, &err, "campaign run inc"), 0);
    free(out);
    free(err);
    json_t *c = last_run_counts("inc");
    assert_int_equal(count_of(c, "g"), lyon);
    assert_int_equal(count_of(c, "x"), lyon);
    json_decref(c);
    assert_int_equal(state_count("SELECT count(*) FROM campaign_targeted WHERE campaign = 'inc'"),
                     lyon);
    /* nobody twice; the plan says why */
    assert_int_equal(baton(&out, &err, "campaign plan inc --json"), 0);
    o = json_loads(out, 0, NULL);
    assert_int_equal(count_of(json_object_get(o, "counts"), "g"), 0);
    json_t *note = json_array_get(json_object_get(json_object_get(o, "notes"), "g"), 0);
    assert_non_null(strstr(json_string_value(note), "targeted"));
    json_decref(o);
    free(out);
    free(err);
    /* three newcomers: only they are targeted */
    sql_exec("UPDATE profiles SET city = 'Lyon' WHERE id IN (SELECT id FROM profiles WHERE "
             "city IS NOT 'Lyon' ORDER BY id LIMIT 3)");
    assert_int_equal(baton(&out, &err, "campaign run inc"), 0);
    free(out);
    free(err);
    c = last_run_counts("inc");
    assert_int_equal(count_of(c, "g"), 3);
    json_decref(c);
    /* past the retention the keys are forgotten: everyone again */
    char *cmd;
    assert_true(asprintf(&cmd,
                         "sqlite3 %s/var/state.db \"UPDATE campaign_targeted SET at = at - 31 * "
                         "86400\"",
                         dir) > 0);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    assert_int_equal(baton(&out, &err, "campaign run inc"), 0);
    free(out);
    free(err);
    c = last_run_counts("inc");
    assert_int_equal(count_of(c, "g"), lyon + 3);
    json_decref(c);
    /* the expired records are gone, this run's are kept */
    assert_int_equal(state_count("SELECT count(*) FROM campaign_targeted WHERE campaign = 'inc'"),
                     lyon + 3);
    /* errors */
    free(path);
    path = file_write(
        dir, "campaigns/inc.cfg",
        "campaign: {\n"
        "  name = \"inc\";\n"
        "  retention = \"soon\";\n"
        "  activities = (\n"
        "    { id = \"g\"; type = \"build_audience\"; dimension = \"profiles\"; incremental = "
        "\"yes\"; }\n"
        "  );\n};\n");
    assert_int_equal(baton(&out, &err, "check"), 2);
    const char *w1 = "inc.cfg:3: campaign: retention = \"soon\" is not a duration";
    if (!strstr(err, w1))
        fail_msg("missing: %s\nin:\n%s", w1, err);
    free(out);
    free(err);
    free(path);
    path = file_write(
        dir, "campaigns/inc.cfg",
        "campaign: {\n"
        "  name = \"inc\";\n"
        "  activities = (\n"
        "    { id = \"g\"; type = \"build_audience\"; dimension = \"profiles\"; incremental = "
        "\"yes\"; }\n"
        "  );\n};\n");
    assert_int_equal(baton(&out, &err, "check"), 2);
    const char *w2 = "inc.cfg:4: activity 'g': incremental must be true or false";
    if (!strstr(err, w2))
        fail_msg("missing: %s\nin:\n%s", w2, err);
    free(out);
    free(err);
    unlink(path);
    free(path);
}

/* The messages the sink holds, in order: "recipient\n<the .eml with
 * quoted-printable soft breaks and =3D undone>", NULL-terminated. */
static char **sink_mail(size_t *n)
{
    char *path;
    if (asprintf(&path, "%s/smtp/log.jsonl", dir) < 0)
        abort();
    char *log = file_read(path, NULL);
    free(path);
    char **v = calloc(64, sizeof *v);
    *n = 0;
    for (char *line = log ? strtok(log, "\n") : NULL; line && *n < 63; line = strtok(NULL, "\n")) {
        json_t *o = json_loads(line, 0, NULL);
        assert_non_null(o);
        if (asprintf(&path, "%s/smtp/%s", dir, json_string_value(json_object_get(o, "file"))) < 0)
            abort();
        char *eml = file_read(path, NULL);
        assert_non_null(eml);
        free(path);
        char *w = eml;
        for (char *r = eml; *r;) {
            if (r[0] == '=' && r[1] == '\r' && r[2] == '\n')
                r += 3;
            else if (!strncmp(r, "=3D", 3))
                *w++ = '=', r += 3;
            else
                *w++ = *r++;
        }
        *w = '\0';
        if (asprintf(&v[(*n)++], "%s\n%s",
                     json_string_value(json_array_get(json_object_get(o, "rcpt_tos"), 0)), eml) < 0)
            abort();
        free(eml);
        json_decref(o);
    }
    free(log);
    return v;
}

static void mail_free(char **v)
{
    for (size_t i = 0; v[i]; i++)
        free(v[i]);
    free(v);
}

static void test_alert_tells_the_operator(void **st)
{
    char *path = file_write(
        dir, "campaigns/al.cfg",
        "campaign: {\n"
        "  name = \"al\";\n"
        "  activities = (\n"
        "    { id = \"g\"; type = \"build_audience\"; dimension = \"profiles\"; filter = \"tier == "
        "'gold'\"; },\n"
        "    { id = \"x\"; type = \"send\"; channel = \"mail\"; input = \"g\"; columns = [ \"id\" "
        "]; },\n"
        /* after the send: its counts are in the message */
        "    { id = \"ops\"; type = \"alert\"; input = \"x\"; channel = \"email\"; to = "
        "\"ops@example.com\"; }\n"
        "  );\n};\n");
    long long gold = sql_count(GOLD);
    char *out, *err;
    /* a plan tells no one */
    assert_int_equal(baton(&out, &err, "campaign plan al"), 0);
    free(out);
    free(err);
    size_t n;
    char **m = sink_mail(&n);
    assert_int_equal(n, 0);
    mail_free(m);
    assert_int_equal(baton(&out, &err, "campaign run al"), 0);
    free(out);
    free(err);
    m = sink_mail(&n);
    assert_int_equal(n, 1);
    assert_true(!strncmp(m[0], "ops@example.com\n", 16));
    char want[128];
    snprintf(want, sizeof want, "g=%lld", gold);
    if (!strstr(m[0], want))
        fail_msg("missing: %s\nin:\n%s", want, m[0]);
    snprintf(want, sizeof want, "sent=%lld failed=0", gold);
    assert_non_null(strstr(m[0], want));
    assert_non_null(strstr(m[0], ": running"));
    mail_free(m);
    unlink(path);
    free(path);
    /* a run that fails: every alert says so, with the error */
    path = file_write(
        dir, "campaigns/af.cfg",
        "campaign: {\n"
        "  name = \"af\";\n"
        "  activities = (\n"
        "    { id = \"g\"; type = \"build_audience\"; dimension = \"profiles\"; filter = \"tier == "
        "'gold'\"; },\n"
        "    { id = \"y\"; type = \"send\"; channel = \"broken\"; input = \"g\"; columns = [ "
        "\"id\" "
        "]; },\n"
        "    { id = \"ops\"; type = \"alert\"; input = \"y\"; channel = \"email\"; to = "
        "\"oncall@example.com\"; }\n"
        "  );\n};\n");
    assert_int_equal(baton(&out, &err, "campaign run af"), 1);
    free(out);
    free(err);
    m = sink_mail(&n);
    assert_int_equal(n, 2);
    assert_true(!strncmp(m[1], "oncall@example.com\n", 19));
    assert_non_null(strstr(m[1], "failed: channel 'broken'"));
    snprintf(want, sizeof want, "g=%lld", gold);
    assert_non_null(strstr(m[1], want));
    assert_null(strstr(m[1], ": running")); /* the alert itself was not reached */
    mail_free(m);
    unlink(path);
    free(path);
    /* errors */
    path = file_write(
        dir, "campaigns/ab.cfg",
        "campaign: {\n"
        "  name = \"ab\";\n"
        "  activities = (\n"
        "    { id = \"g\"; type = \"build_audience\"; dimension = \"profiles\"; },\n"
        "    { id = \"a1\"; type = \"alert\"; input = \"g\"; channel = \"email\"; },\n"
        "    { id = \"a2\"; type = \"alert\"; input = \"g\"; channel = \"emial\"; to = \"x@y\"; "
        "},\n"
        "    { id = \"a3\"; type = \"alert\"; input = \"g\"; channel = \"mail\"; to = \"x@y\"; },\n"
        "    { id = \"a4\"; type = \"alert\"; channel = \"email\"; to = \"x@y\"; },\n"
        "    { id = \"a5\"; type = \"alert\"; input = \"g\"; channel = \"email\"; to = \"\"; }\n"
        "  );\n};\n");
    assert_int_equal(baton(&out, &err, "check"), 2);
    static const char *const want_err[] = {
        "ab.cfg:5: activity 'a1': missing required key 'to'",
        "ab.cfg:6: activity 'a2': unknown channel 'emial' (did you mean 'email'?)",
        "ab.cfg:7: activity 'a3': channel 'mail' has no content parts",
        "ab.cfg:8: activity 'a4': an alert takes one input or more",
        "ab.cfg:9: activity 'a5': to must be the operator's address on channel 'email'",
    };
    for (size_t i = 0; i < sizeof want_err / sizeof *want_err; i++)
        if (!strstr(err, want_err[i]))
            fail_msg("missing: %s\nin:\n%s", want_err[i], err);
    free(out);
    free(err);
    unlink(path);
    free(path);
}

static void test_saved_audience_keeps_its_columns(void **st)
{
    char *rd = file_write(
        dir, "campaigns/rd.cfg",
        "campaign: {\n"
        "  name = \"rd\";\n"
        "  activities = (\n"
        "    { id = \"r\"; type = \"read_audience\"; name = \"gold_spend\"; dimension = "
        "\"profiles\"; },\n"
        "    { id = \"big\"; type = \"split\"; input = \"r\"; branches = ( { name = \"hi\"; filter "
        "= \"spent > 500 and n > 2\"; } ); },\n"
        "    { id = \"x\"; type = \"send\"; channel = \"mail\"; input = \"big.hi\"; columns = [ "
        "\"id\", \"spent\", \"n\" ]; }\n"
        "  );\n};\n");
    char *out, *err;
    /* not saved yet: its columns are unknown */
    assert_int_equal(baton(&out, &err, "check"), 2);
    const char *unknown = "rd.cfg:5: branches.0.filter: 1:1: unknown field 'spent' in profiles";
    if (!strstr(err, unknown))
        fail_msg("missing: %s\nin:\n%s", unknown, err);
    free(out);
    free(err);
    unlink(rd);
    char *sv = file_write(
        dir, "campaigns/sv.cfg",
        "campaign: {\n"
        "  name = \"sv\";\n"
        "  activities = (\n"
        "    { id = \"g\"; type = \"build_audience\"; dimension = \"profiles\"; filter = \"tier == "
        "'gold'\"; },\n"
        "    { id = \"e\"; type = \"enrich\"; input = \"g\"; add = ( { name = \"spent\"; value = "
        "\"coalesce(sum(orders.amount), 0)\"; },\n"
        "                                                     { name = \"n\"; value = "
        "\"count(orders)\"; } ); },\n"
        "    { id = \"s\"; type = \"save_audience\"; input = \"e\"; name = \"gold_spend\"; }\n"
        "  );\n};\n");
    assert_int_equal(baton(&out, &err, "campaign run sv"), 0);
    free(out);
    free(err);
    free(rd);
    rd = file_write(
        dir, "campaigns/rd.cfg",
        "campaign: {\n"
        "  name = \"rd\";\n"
        "  activities = (\n"
        "    { id = \"r\"; type = \"read_audience\"; name = \"gold_spend\"; },\n"
        "    { id = \"big\"; type = \"split\"; input = \"r\"; branches = ( { name = \"hi\"; filter "
        "= \"spent > 500 and n > 2\"; } ); },\n"
        "    { id = \"x\"; type = \"send\"; channel = \"mail\"; input = \"big.hi\"; columns = [ "
        "\"id\", \"spent\", \"n\" ]; }\n"
        "  );\n};\n");
    assert_int_equal(baton(&out, &err, "check"), 0);
    free(out);
    free(err);
    assert_int_equal(baton(&out, &err, "campaign run rd"), 0);
    free(out);
    free(err);
    const char *q =
        "SELECT count(*) FROM (SELECT p.id, (SELECT count(*) FROM orders o WHERE "
        "o.profile_id = p.id) AS n, (SELECT coalesce(sum(amount), 0) FROM orders o "
        "WHERE o.profile_id = p.id) AS spent FROM profiles p WHERE tier = 'gold') WHERE "
        "spent > 500 AND n > 2";
    long long want = sql_count(q);
    assert_true(want > 0);
    json_t *c = last_run_counts("rd");
    assert_int_equal(count_of(c, "big.hi"), want);
    json_decref(c);
    /* the values are the saved ones: every exported n is over 2 */
    char *csv, *ls;
    assert_true(asprintf(&ls, "ls %s/var/exports/rd-*-x.csv", dir) > 0);
    assert_int_equal(run_capture(ls, &csv, NULL), 0);
    csv[strcspn(csv, "\n")] = '\0';
    char *text = file_read(csv, NULL);
    assert_non_null(text);
    assert_true(!strncmp(text, "id,spent,n\r\n", 12));
    size_t rows = 0;
    for (char *line = strstr(text, "\r\n") + 2; *line; rows++) {
        char *eol = strstr(line, "\r\n");
        assert_non_null(eol);
        *eol = '\0';
        char *lastc = strrchr(line, ',');
        assert_non_null(lastc);
        assert_true(atoll(lastc + 1) > 2);
        line = eol + 2;
    }
    assert_int_equal(rows, want);
    free(text);
    free(csv);
    free(ls);
    unlink(rd);
    unlink(sv);
    free(rd);
    free(sv);
}

static long long csv_lines(const char *pattern)
{
    char *cmd, *out = NULL;
    if (asprintf(&cmd, "cat %s/var/exports/%s | grep -c . ", dir, pattern) < 0)
        abort();
    run_capture(cmd, &out, NULL);
    long long n = out ? atoll(out) : -1;
    free(cmd);
    free(out);
    return n;
}

/* An input behind a wait: the or_join goes on with the other at once, and
 * again with the late rows when the wait is over; a row in both is sent
 * once. */
static void test_or_join_goes_on_as_each_input_arrives(void **st)
{
    char *path = file_write(
        dir, "campaigns/oja.cfg",
        "campaign: {\n"
        "  name = \"oja\";\n"
        "  activities = (\n"
        "    { id = \"gold\"; type = \"build_audience\"; dimension = \"profiles\"; filter = \"tier "
        "== 'gold'\"; },\n"
        "    { id = \"rich\"; type = \"build_audience\"; dimension = \"profiles\"; filter = "
        "\"score > 50\"; },\n"
        "    { id = \"later\"; type = \"wait\"; input = \"gold\"; duration = \"1s\"; },\n"
        "    { id = \"j\"; type = \"or_join\"; inputs = [ \"later\", \"rich\" ]; },\n"
        "    { id = \"out\"; type = \"send\"; channel = \"mail\"; input = \"j\"; columns = [ "
        "\"id\" "
        "]; }\n"
        "  );\n};\n");
    long long gold = sql_count(GOLD);
    long long rich = sql_count("SELECT count(*) FROM profiles WHERE score > 50");
    long long both = sql_count("SELECT count(*) FROM profiles WHERE score > 50 AND tier = 'gold'");
    char *out, *err;
    assert_int_equal(baton(&out, &err, "campaign run oja"), 0);
    assert_non_null(strstr(err, "waits at 'later'"));
    free(out);
    free(err);
    json_t *c = last_run_counts("oja");
    assert_int_equal(count_of(c, "j"), rich);
    assert_int_equal(count_of(c, "out"), rich);
    json_decref(c);
    sleep(2); /* the wait is over: no figure below depends on how long after */
    assert_int_equal(baton(&out, &err, "campaign run oja --resume"), 0);
    free(out);
    free(err);
    c = last_run_counts("oja");
    assert_int_equal(count_of(c, "j"), gold + rich - both);
    assert_int_equal(count_of(c, "out"), gold + rich - both);
    json_decref(c);
    char *state = db;
    if (asprintf(&db, "%s/var/state.db", dir) < 0)
        abort();
    assert_int_equal(sql_count("SELECT count(*) FROM deliveries WHERE key LIKE 'oja/%/out/%'"),
                     gold + rich - both);
    free(db);
    db = state;
    /* the export of the rows come first, then of those come since */
    assert_int_equal(csv_lines("oja-*-out.csv"), rich + 1);
    assert_int_equal(csv_lines("oja-*-out-2.csv"), gold - both + 1);
    unlink(path);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_test_sends_the_whole_input_one_way),
        cmocka_unit_test(test_test_errors),
        cmocka_unit_test(test_or_join_passes_each_row_once),
        cmocka_unit_test(test_or_join_goes_on_as_each_input_arrives),
        cmocka_unit_test(test_end_starts_another_campaign),
        cmocka_unit_test(test_incremental_audience_targets_each_row_once),
        cmocka_unit_test(test_alert_tells_the_operator),
        cmocka_unit_test(test_saved_audience_keeps_its_columns),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
