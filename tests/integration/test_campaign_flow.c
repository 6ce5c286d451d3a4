/* Campaign flow and what the docs promise of a run: per-run counts exact
 * when the dispatcher is shared (serve), waiting runs of a campaign
 * without a schedule resumed by serve's scheduler, campaign deliveries in
 * `baton profile`, check refusing a channel that ignores a consent field
 * the profiles keep, and a send that failed every message failing the
 * run (exit 1, with the counts). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "campaign/engine.h"
#include "campaign/history.h"
#include "campaign/report.h"
#include "campaign/schedule.h"
#include "delivery/dispatch.h"
#include "plugin/app.h"
#include "support/fs.h"

static char *dir, *cfg, *db;

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

static char *sql_text(const char *sql)
{
    char *cmd, *out = NULL, *err = NULL;
    if (asprintf(&cmd, "sqlite3 %s \"%s\"", db, sql) < 0)
        abort();
    if (run_capture(cmd, &out, &err) != 0)
        fail_msg("sqlite3 failed: %s\n%s", sql, err);
    out[strcspn(out, "\n")] = '\0';
    free(cmd);
    free(err);
    return out;
}

static int setup(void **st)
{
    const char *plugins = getenv("BATON_PLUGINS"), *src = getenv("BATON_SRC");
    if (!plugins || !src || !getenv("BATON_BIN"))
        return -1;
    dir = tmpdir_make("campaign-flow");
    char *text;
    if (asprintf(
            &text,
            "baton: { data_dir = \"var\"; plugin_path = [ \"%s\" ]; log = { level = \"error\"; }; "
            "};\n"
            "sources: { crm: { plugin = \"source_sqlite\"; path = \"var/crm.db\"; schema = "
            "\"%s/conf/schema.cfg\"; }; };\n"
            "profiles = \"crm\";\n"
            "channels: {\n"
            "  mail: { plugin = \"channel_directmail\"; dir = \"var/exports\"; };\n"
            /* first_name is no email address: format() refuses every message */
            "  bad: { plugin = \"channel_email\"; port = 9; from = \"news@example.com\";\n"
            "         address = \"first_name\"; consent = \"consent_email\"; retries = 0; };\n"
            "  nocons: { plugin = \"channel_email\"; port = 9; from = \"news@example.com\"; "
            "address = \"email\"; };\n"
            "};\n"
            "campaigns = [ \"campaigns\" ];\n",
            plugins, src) < 0)
        abort();
    cfg = file_write(dir, "baton.cfg", text);
    free(text);
    if (asprintf(&db, "%s/var/crm.db", dir) < 0)
        abort();
    char *sub;
    if (asprintf(&sub, "%s/campaigns", dir) < 0 || mkdir(sub, 0755) != 0)
        abort();
    free(sub);
    char *out, *err;
    int rc = baton(&out, &err, "sample-data --profiles 600 --seed 5");
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

static const char gold_to_mail[] =
    "campaign: {\n  name = \"%s\";\n  activities = (\n"
    "    { id = \"g\"; type = \"build_audience\"; dimension = \"profiles\"; filter = \"tier == "
    "'gold'\"; },\n"
    "    { id = \"out\"; type = \"send\"; channel = \"mail\"; input = \"g\"; columns = [ \"id\" "
    "]; }\n"
    "  );\n};\n";

static char *campaign_file(const char *name, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static char *campaign_file(const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *text, *file;
    if (vasprintf(&text, fmt, ap) < 0 || asprintf(&file, "campaigns/%s.cfg", name) < 0)
        abort();
    va_end(ap);
    char *path = file_write(dir, file, text);
    free(text);
    free(file);
    return path;
}

/* The latest run of a campaign, as `campaign runs --json` has it. */
static json_t *last_run(const char *name)
{
    char *out, *err;
    assert_int_equal(baton(&out, &err, "campaign runs %s --json", name), 0);
    json_t *o = json_loads(out, 0, NULL);
    assert_non_null(o);
    json_t *r = json_incref(json_array_get(json_object_get(o, "runs"), 0));
    assert_non_null(r);
    json_decref(o);
    free(out);
    free(err);
    return r;
}

static json_t *activity_of(json_t *run, const char *id)
{
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(run, "activities"), i,
                       a) if (!strcmp(json_string_value(json_object_get(a, "id")), id)) return a;
    return NULL;
}

/* The state of a run's hold at activity id ("" when none). */
static const char *hold_state(json_t *run, const char *id)
{
    size_t i;
    json_t *h;
    json_array_foreach(json_object_get(run, "holds"), i,
                       h) if (!strcmp(json_string_value(json_object_get(h, "activity")),
                                      id)) return json_string_value(json_object_get(h, "state"));
    return "";
}

/* serve shares one dispatcher per channel between every run and journey */
typedef struct shared {
    dispatcher *d;
    instance *inst;
} shared;

static dispatcher *shared_for(void *ud, const char *channel, instance **inst)
{
    shared *s = ud;
    *inst = s->inst;
    return strcmp(channel, "mail") ? NULL : s->d;
}

static void test_counts_per_run_with_a_shared_dispatcher(void **st)
{
    char *path = campaign_file("shared", gold_to_mail, "shared");
    app a;
    diag d;
    diag_init(&d);
    assert_int_equal(app_open(&a, cfg, APP_INIT, &d), 0);
    store s;
    char err[256];
    assert_int_equal(store_open(&s, a.conf.data_dir, err, sizeof err), 0);
    shared sh = {.inst = app_find(&a, "channels", "mail")};
    assert_non_null(sh.inst);
    assert_int_equal(instance_start(sh.inst), 0);
    dispatch_opts o = {.caps = &a.conf};
    sh.d = dispatch_open(sh.inst, &s, &o, err, sizeof err);
    assert_non_null(sh.d);
    act_registry reg;
    assert_int_equal(act_registry_load(&reg, &a, &d), 0);
    camp_run_opts ro = {.dispatcher_for = shared_for, .dispatcher_ud = &sh, .store = &s};
    for (int k = 0; k < 2; k++)
        assert_int_equal(campaign_run_file(&a, &reg, path, &ro, &d), 0);
    dispatch_stats ds;
    dispatch_get_stats(sh.d, &ds);
    long long gold = sql_count("SELECT count(*) FROM profiles WHERE tier = 'gold'");
    assert_int_equal(ds.sent, 2 * gold); /* the dispatcher's own figure: both runs */
    json_t *runs = campaign_runs_json(&s, "shared", 0);
    json_t *r2 = json_array_get(json_object_get(runs, "runs"), 0);
    assert_int_equal(json_integer_value(json_object_get(activity_of(r2, "out"), "sent")), gold);
    json_decref(runs);
    dispatch_close(sh.d, 1, 10000);
    act_registry_free(&reg);
    store_close(&s);
    app_close(&a);
    diag_free(&d);
    unlink(path);
    free(path);
}

static int tick(int64_t now)
{
    app a;
    diag d;
    diag_init(&d);
    assert_int_equal(app_open(&a, cfg, APP_INIT, &d), 0);
    int n = campaign_scheduler_tick(&a, now);
    app_close(&a);
    diag_free(&d);
    return n;
}

static void test_unscheduled_wait_resumed_by_the_scheduler(void **st)
{
    char *path = campaign_file(
        "later",
        "campaign: {\n  name = \"later\";\n  activities = (\n"
        "    { id = \"g\"; type = \"build_audience\"; dimension = \"profiles\"; filter = \"tier "
        "== 'gold'\"; },\n"
        "    { id = \"hold\"; type = \"wait\"; input = \"g\"; duration = \"2h\"; },\n"
        "    { id = \"out\"; type = \"send\"; channel = \"mail\"; input = \"hold\"; columns = [ "
        "\"id\" ]; }\n"
        "  );\n};\n");
    char *out, *err;
    assert_int_equal(baton(&out, &err, "campaign run later"), 0);
    assert_non_null(strstr(err, "waits at 'hold' until"));
    free(out);
    free(err);
    json_t *r = last_run("later");
    assert_string_equal(json_string_value(json_object_get(r, "status")), "waiting");
    int64_t id = json_integer_value(json_object_get(r, "id"));
    json_decref(r);
    int64_t now = (int64_t)time(NULL);
    assert_int_equal(tick(now + 3600), 0); /* not due yet */
    r = last_run("later");
    assert_string_equal(json_string_value(json_object_get(r, "status")), "waiting");
    json_decref(r);
    assert_int_equal(tick(now + 2 * 3600 + 60), 1);
    r = last_run("later");
    assert_int_equal(json_integer_value(json_object_get(r, "id")), id);
    assert_string_equal(json_string_value(json_object_get(r, "status")), "done");
    assert_int_equal(json_integer_value(json_object_get(activity_of(r, "out"), "sent")),
                     sql_count("SELECT count(*) FROM profiles WHERE tier = 'gold'"));
    json_decref(r);
    unlink(path);
    free(path);
}

static void test_profile_lists_campaign_deliveries(void **st)
{
    char *path = campaign_file("prof", gold_to_mail, "prof");
    char *out, *err;
    assert_int_equal(baton(&out, &err, "campaign run prof"), 0);
    free(out);
    free(err);
    char *pid = sql_text("SELECT id FROM profiles WHERE tier = 'gold' ORDER BY id LIMIT 1");
    assert_int_equal(baton(&out, &err, "profile %s", pid), 0);
    json_t *r = last_run("prof");
    char want[128];
    snprintf(want, sizeof want, "campaign prof/%lld/out/%s channel mail: sent",
             (long long)json_integer_value(json_object_get(r, "id")), pid);
    if (!strstr(out, want))
        fail_msg("missing '%s' in:\n%s", want, out);
    json_decref(r);
    free(out);
    free(err);
    free(pid);
    unlink(path);
    free(path);
}

static void test_check_refuses_a_channel_ignoring_consent(void **st)
{
    char *path = campaign_file(
        "nc",
        "campaign: {\n  name = \"nc\";\n  activities = (\n"
        "    { id = \"g\"; type = \"build_audience\"; dimension = \"profiles\"; },\n"
        "    { id = \"m\"; type = \"send\"; channel = \"nocons\"; input = \"g\"; subject = \"s\"; "
        "text = \"t\"; }\n"
        "  );\n};\n");
    char *out, *err;
    assert_int_equal(baton(&out, &err, "check"), 2);
    const char *want = "baton.cfg:8: channels.nocons: no `consent`, though profiles has the field "
                       "'consent_email': set consent = \"consent_email\", or activity 'm' sends "
                       "to profiles that did not consent";
    if (!strstr(err, want))
        fail_msg("missing '%s' in:\n%s", want, err);
    free(out);
    free(err);
    unlink(path);
    free(path);
}

static void test_a_send_that_failed_every_message_fails_the_run(void **st)
{
    char *path = campaign_file(
        "allbad",
        "campaign: {\n  name = \"allbad\";\n  activities = (\n"
        "    { id = \"g\"; type = \"build_audience\"; dimension = \"profiles\"; filter = \"tier "
        "== 'gold'\"; },\n"
        "    { id = \"m\"; type = \"send\"; channel = \"bad\"; input = \"g\"; subject = \"s\"; "
        "text = \"t\"; }\n"
        "  );\n};\n");
    char *out, *err;
    assert_int_equal(baton(&out, &err, "campaign run allbad"), 1);
    long long cons = sql_count("SELECT count(*) FROM profiles WHERE tier = 'gold' AND "
                               "consent_email = 1 AND first_name IS NOT NULL AND first_name != ''");
    long long nocons = sql_count(
        "SELECT count(*) FROM profiles WHERE tier = 'gold' AND coalesce(consent_email, 0) = 0");
    assert_true(cons > 0);
    char want[256];
    snprintf(want, sizeof want,
             "allbad.cfg:5: activity 'm': every message failed: 0 sent, %lld failed, 0 capped, "
             "0 no address, %lld no consent; the first: not an email address",
             cons, nocons);
    if (!strstr(err, want))
        fail_msg("missing '%s' in:\n%s", want, err);
    free(out);
    free(err);
    json_t *r = last_run("allbad");
    assert_string_equal(json_string_value(json_object_get(r, "status")), "failed");
    assert_non_null(strstr(json_string_value(json_object_get(r, "error")), "every message failed"));
    json_decref(r);
    unlink(path);
    free(path);
}

/* A wait holds only its own branch: the send beside it goes at once, the
 * run is waiting, --resume before it is due changes nothing, and each
 * tick of serve's scheduler (a new app each time, as after a restart of
 * serve) resumes it only once the two days have passed. */
static void test_a_wait_holds_only_its_branch(void **st)
{
    char *path = campaign_file(
        "branches",
        "campaign: {\n  name = \"branches\";\n  activities = (\n"
        "    { id = \"g\"; type = \"build_audience\"; dimension = \"profiles\"; filter = \"tier "
        "== 'gold'\"; },\n"
        "    { id = \"hold\"; type = \"wait\"; input = \"g\"; duration = \"2d\"; },\n"
        "    { id = \"late\"; type = \"send\"; channel = \"mail\"; input = \"hold\"; columns = [ "
        "\"id\" ]; },\n"
        "    { id = \"soon\"; type = \"send\"; channel = \"mail\"; input = \"g\"; columns = [ "
        "\"id\" ]; }\n"
        "  );\n};\n");
    long long gold = sql_count("SELECT count(*) FROM profiles WHERE tier = 'gold'");
    assert_true(gold > 0);
    char *out, *err;
    int64_t now = (int64_t)time(NULL);
    assert_int_equal(baton(&out, &err, "campaign run branches"), 0);
    assert_non_null(strstr(err, "waits at 'hold' until"));
    free(out);
    free(err);
    json_t *r = last_run("branches");
    int64_t id = json_integer_value(json_object_get(r, "id"));
    assert_string_equal(json_string_value(json_object_get(r, "status")), "waiting");
    assert_int_equal(json_integer_value(json_object_get(activity_of(r, "soon"), "sent")), gold);
    assert_null(activity_of(r, "late"));
    assert_string_equal(hold_state(r, "hold"), "waiting");
    json_decref(r);
    /* --resume before it is due: the run goes on waiting */
    assert_int_equal(baton(&out, &err, "campaign run branches --resume"), 0);
    assert_non_null(strstr(err, "waits at 'hold' until"));
    free(out);
    free(err);
    assert_int_equal(tick(now + 86400), 0);
    r = last_run("branches");
    assert_int_equal(json_integer_value(json_object_get(r, "id")), id);
    assert_string_equal(json_string_value(json_object_get(r, "status")), "waiting");
    assert_null(activity_of(r, "late"));
    json_decref(r);
    assert_int_equal(tick(now + 2 * 86400 + 60), 1);
    r = last_run("branches");
    assert_int_equal(json_integer_value(json_object_get(r, "id")), id);
    assert_string_equal(json_string_value(json_object_get(r, "status")), "done");
    assert_int_equal(json_integer_value(json_object_get(activity_of(r, "late"), "sent")), gold);
    assert_int_equal(json_integer_value(json_object_get(activity_of(r, "soon"), "sent")), gold);
    assert_string_equal(hold_state(r, "hold"), "passed");
    json_decref(r);
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM deliveries WHERE key LIKE 'branches/%lld/soon/%%'",
             (long long)id);
    char *state = db;
    if (asprintf(&db, "%s/var/state.db", dir) < 0)
        abort();
    assert_int_equal(sql_count(sql), gold); /* once each, not again on resume */
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM deliveries WHERE key LIKE 'branches/%lld/late/%%'",
             (long long)id);
    assert_int_equal(sql_count(sql), gold);
    free(db);
    db = state;
    unlink(path);
    free(path);
}

/* Waits add up along a path to at most the campaign's retention: past it
 * a check error at the wait that crosses it; a run resumed so late that
 * its next wait would end past it fails, naming the run. */
static void test_retention_bounds_the_waits(void **st)
{
    static const char two_waits[] =
        "campaign: {\n  name = \"%s\";%s\n  activities = (\n"
        "    { id = \"g\"; type = \"build_audience\"; dimension = \"profiles\"; filter = \"tier "
        "== 'gold'\"; },\n"
        "    { id = \"w1\"; type = \"wait\"; input = \"g\"; duration = \"%s\"; },\n"
        "    { id = \"w2\"; type = \"wait\"; input = \"w1\"; duration = \"%s\"; },\n"
        "    { id = \"out\"; type = \"send\"; channel = \"mail\"; input = \"w2\"; columns = [ "
        "\"id\" ]; }\n"
        "  );\n};\n";
    char *path = campaign_file("long", two_waits, "long", "", "3d", "3d");
    char *out, *err;
    assert_int_equal(baton(&out, &err, "campaign plan long"), 2);
    const char *want = "long.cfg:6: activity 'w2': the run would hold its rows 6d up to here, "
                       "past the campaign's retention of 5d (retention = \"6d\" keeps them longer)";
    if (!strstr(err, want))
        fail_msg("missing '%s' in:\n%s", want, err);
    free(out);
    free(err);
    unlink(path);
    free(path);
    path = campaign_file("long", two_waits, "long", " retention = \"1x\";", "3d", "3d");
    assert_int_equal(baton(&out, &err, "campaign plan long"), 2);
    want = "long.cfg:2: campaign: retention = \"1x\" is not a duration of a second or more";
    if (!strstr(err, want))
        fail_msg("missing '%s' in:\n%s", want, err);
    free(out);
    free(err);
    unlink(path);
    free(path);
    path = campaign_file("long", two_waits, "long", " retention = \"6d\";", "3d", "3d");
    assert_int_equal(baton(&out, &err, "campaign plan long"), 0);
    free(out);
    free(err);
    unlink(path);
    free(path);

    path = campaign_file("late", two_waits, "late", "", "1d", "4d");
    int64_t now = (int64_t)time(NULL);
    assert_int_equal(baton(&out, &err, "campaign run late"), 0);
    free(out);
    free(err);
    json_t *r = last_run("late");
    int64_t id = json_integer_value(json_object_get(r, "id"));
    json_decref(r);
    /* serve was down: w1 was due after a day, resumed after three */
    assert_int_equal(tick(now + 3 * 86400), 0);
    r = last_run("late");
    assert_string_equal(json_string_value(json_object_get(r, "status")), "failed");
    char msg[160];
    snprintf(msg, sizeof msg, "late.cfg:6: activity 'w2': run %lld would hold its rows until ",
             (long long)id);
    const char *e = json_string_value(json_object_get(r, "error"));
    if (!strstr(e, msg) || !strstr(e, "past the campaign's retention (5d from the run's start)"))
        fail_msg("unexpected error: %s", e);
    assert_null(activity_of(r, "out"));
    json_decref(r);
    unlink(path);
    free(path);
}

static const char launch[] =
    "campaign: {\n  name = \"launch\";\n"
    "  parameters = ( { name = \"discount\"; type = \"int\"; default = \"10\"; } );\n"
    "  activities = (\n"
    "    { id = \"g\"; type = \"build_audience\"; dimension = \"profiles\"; filter = \"tier == "
    "'gold'\"; },\n"
    "    { id = \"sig\"; type = \"signal\"; input = \"g\"; timeout = \"1d\"; },\n"
    "    { id = \"t\"; type = \"test\"; input = \"sig\"; when = \"param.discount > 20\"; },\n"
    "    { id = \"out\"; type = \"send\"; channel = \"mail\"; input = \"t.then\"; columns = [ "
    "\"id\" ]; }\n"
    "  );\n};\n";

static long long count_of(json_t *act, const char *transition)
{
    json_t *v = json_object_get(json_object_get(act, "counts"), transition);
    assert_non_null(v);
    return json_integer_value(v);
}

/* A signal holds its branch until `campaign signal` (which resumes the run
 * at once, its values read downstream as param.*), or its timeout: then
 * the branch ends there. Bad signals name the run. */
static void test_signal(void **st)
{
    char *path = campaign_file("launch", "%s", launch);
    long long gold = sql_count("SELECT count(*) FROM profiles WHERE tier = 'gold'");
    char *out, *err;
    assert_int_equal(baton(&out, &err, "campaign run launch"), 0);
    assert_non_null(strstr(err, "waits at 'sig' for a signal until"));
    free(out);
    free(err);
    json_t *r = last_run("launch");
    int64_t id = json_integer_value(json_object_get(r, "id"));
    assert_string_equal(json_string_value(json_object_get(r, "status")), "waiting");
    assert_null(activity_of(r, "sig"));
    json_decref(r);

    assert_int_equal(baton(&out, &err, "campaign signal launch 99999"), 1);
    assert_non_null(strstr(err, "baton campaign signal: campaign launch has no run 99999"));
    free(out);
    free(err);
    assert_int_equal(baton(&out, &err, "campaign signal launch %lld --param nope=1", (long long)id),
                     2);
    assert_non_null(strstr(err, "launch.cfg: campaign launch: signal parameters: "));
    assert_non_null(strstr(err, "nope"));
    free(out);
    free(err);
    assert_int_equal(
        baton(&out, &err, "campaign signal launch %lld --param discount=many", (long long)id), 2);
    assert_non_null(strstr(err, "mistyped"));
    free(out);
    free(err);

    /* a run recorded running (killed after it resumed, or going on in
     * another process) with a signal pending takes it too */
    char sql[160];
    snprintf(sql, sizeof sql, "UPDATE campaign_runs SET status = 'running' WHERE id = %lld",
             (long long)id);
    char *crm = db;
    if (asprintf(&db, "%s/var/state.db", dir) < 0)
        abort();
    sql_count(sql);
    free(db);
    db = crm;
    assert_int_equal(
        baton(&out, &err, "campaign signal launch %lld --param discount=25", (long long)id), 0);
    char want[128];
    snprintf(want, sizeof want, "campaign launch: run %lld: signal 'sig' received", (long long)id);
    if (!strstr(err, want))
        fail_msg("missing '%s' in:\n%s", want, err);
    snprintf(want, sizeof want, "campaign launch: run %lld done", (long long)id);
    if (!strstr(err, want))
        fail_msg("missing '%s' in:\n%s", want, err);
    free(out);
    free(err);
    r = last_run("launch");
    assert_int_equal(json_integer_value(json_object_get(r, "id")), id);
    assert_string_equal(json_string_value(json_object_get(r, "status")), "done");
    assert_string_equal(json_string_value(json_object_get(r, "trigger")), "manual");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(r, "parameters"), "discount")), 25);
    assert_int_equal(count_of(activity_of(r, "sig"), "sig"), gold);
    assert_int_equal(count_of(activity_of(r, "t"), "t.then"), gold); /* param.discount read: 25 */
    assert_int_equal(json_integer_value(json_object_get(activity_of(r, "out"), "sent")), gold);
    assert_string_equal(hold_state(r, "sig"), "signaled");
    json_decref(r);

    /* once done, a signal is refused with the run's id */
    assert_int_equal(baton(&out, &err, "campaign signal launch %lld", (long long)id), 1);
    snprintf(want, sizeof want,
             "run %lld of campaign launch is not waiting (it is done): only a run waiting at a "
             "signal activity takes a signal",
             (long long)id);
    if (!strstr(err, want))
        fail_msg("missing '%s' in:\n%s", want, err);
    free(out);
    free(err);

    /* no signal within the timeout: the branch ends, the run is done */
    int64_t now = (int64_t)time(NULL);
    assert_int_equal(baton(&out, &err, "campaign run launch"), 0);
    free(out);
    free(err);
    r = last_run("launch");
    int64_t id2 = json_integer_value(json_object_get(r, "id"));
    json_decref(r);
    assert_true(id2 > id);
    assert_int_equal(tick(now + 3600), 0);
    assert_int_equal(tick(now + 86400 + 60), 1);
    r = last_run("launch");
    assert_int_equal(json_integer_value(json_object_get(r, "id")), id2);
    assert_string_equal(json_string_value(json_object_get(r, "status")), "done");
    assert_int_equal(count_of(activity_of(r, "sig"), "sig"), 0);
    assert_null(activity_of(r, "t"));
    assert_null(activity_of(r, "out"));
    assert_string_equal(hold_state(r, "sig"), "timed_out");
    json_decref(r);
    unlink(path);
    free(path);

    /* a run waiting at a wait, not a signal */
    path = campaign_file(
        "holdonly", "campaign: {\n  name = \"holdonly\";\n  activities = (\n"
                    "    { id = \"g\"; type = \"build_audience\"; dimension = \"profiles\"; },\n"
                    "    { id = \"hold\"; type = \"wait\"; input = \"g\"; duration = \"1h\"; }\n"
                    "  );\n};\n");
    assert_int_equal(baton(&out, &err, "campaign run holdonly"), 0);
    free(out);
    free(err);
    r = last_run("holdonly");
    id = json_integer_value(json_object_get(r, "id"));
    json_decref(r);
    assert_int_equal(baton(&out, &err, "campaign signal holdonly %lld", (long long)id), 1);
    snprintf(want, sizeof want,
             "run %lld of campaign holdonly waits for no signal (it waits at 'hold' until ",
             (long long)id);
    if (!strstr(err, want))
        fail_msg("missing '%s' in:\n%s", want, err);
    free(out);
    free(err);
    unlink(path);
    free(path);
}

static pid_t serve_start(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        char log[1024];
        snprintf(log, sizeof log, "%s/serve.log", dir);
        if (!freopen(log, "a", stdout) || !freopen(log, "a", stderr) || chdir(dir) != 0)
            _exit(127);
        execl(getenv("BATON_BIN"), "baton", "-c", cfg, "serve", (char *)NULL);
        _exit(127);
    }
    assert_true(pid > 0);
    return pid;
}

static void serve_stop(pid_t pid)
{
    kill(pid, SIGTERM);
    int status;
    for (int i = 0; i < 1000 && waitpid(pid, &status, WNOHANG) == 0; i++)
        usleep(10000);
    if (waitpid(pid, &status, WNOHANG) == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
}

/* The same with a real `baton serve` on the real clock: a 3 s wait
 * beside a send, serve stopped during the wait and started again; the
 * second one resumes the run when it is due (its scheduler sleeps until
 * the wait, not a whole period). */
static void test_serve_restarted_during_a_wait(void **st)
{
    char *path = campaign_file(
        "restart",
        "campaign: {\n  name = \"restart\";\n  activities = (\n"
        "    { id = \"g\"; type = \"build_audience\"; dimension = \"profiles\"; filter = \"tier "
        "== 'gold'\"; },\n"
        "    { id = \"hold\"; type = \"wait\"; input = \"g\"; duration = \"3s\"; },\n"
        "    { id = \"late\"; type = \"send\"; channel = \"mail\"; input = \"hold\"; columns = [ "
        "\"id\" ]; },\n"
        "    { id = \"soon\"; type = \"send\"; channel = \"mail\"; input = \"g\"; columns = [ "
        "\"id\" ]; }\n"
        "  );\n};\n");
    long long gold = sql_count("SELECT count(*) FROM profiles WHERE tier = 'gold'");
    char *out, *err;
    assert_int_equal(baton(&out, &err, "campaign run restart"), 0);
    free(out);
    free(err);
    json_t *r = last_run("restart");
    int64_t id = json_integer_value(json_object_get(r, "id"));
    assert_string_equal(json_string_value(json_object_get(r, "status")), "waiting");
    assert_int_equal(json_integer_value(json_object_get(activity_of(r, "soon"), "sent")), gold);
    json_decref(r);
    serve_stop(serve_start()); /* restarted during the wait */
    pid_t pid = serve_start();
    const char *status = "";
    for (int i = 0; i < 600; i++) { /* a minute at most */
        r = last_run("restart");
        status = json_string_value(json_object_get(r, "status"));
        if (strcmp(status, "waiting") && strcmp(status, "running"))
            break;
        json_decref(r);
        r = NULL;
        usleep(100000);
    }
    serve_stop(pid);
    assert_non_null(r);
    assert_int_equal(json_integer_value(json_object_get(r, "id")), id);
    assert_string_equal(status, "done");
    assert_int_equal(json_integer_value(json_object_get(activity_of(r, "late"), "sent")), gold);
    json_decref(r);
    char sql[256], *crm = db;
    if (asprintf(&db, "%s/var/state.db", dir) < 0)
        abort();
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM deliveries WHERE key LIKE 'restart/%lld/%%' AND status = 'sent'",
             (long long)id);
    assert_int_equal(sql_count(sql), 2 * gold); /* each branch once */
    free(db);
    db = crm;
    unlink(path);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_per_run_with_a_shared_dispatcher),
        cmocka_unit_test(test_unscheduled_wait_resumed_by_the_scheduler),
        cmocka_unit_test(test_profile_lists_campaign_deliveries),
        cmocka_unit_test(test_check_refuses_a_channel_ignoring_consent),
        cmocka_unit_test(test_a_send_that_failed_every_message_fails_the_run),
        cmocka_unit_test(test_a_wait_holds_only_its_branch),
        cmocka_unit_test(test_retention_bounds_the_waits),
        cmocka_unit_test(test_signal),
        cmocka_unit_test(test_serve_restarted_during_a_wait),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
