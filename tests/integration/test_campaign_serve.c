/* Campaign schedules as `baton serve` runs them: a schedule missed during
 * downtime gets one catch-up run, logged as such, never a burst; the next
 * slot runs once; a killed run is resumed before anything new starts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "plugin/app.h"
#include "campaign/history.h"
#include "campaign/schedule.h"
#include "support/fs.h"
#include "base/timefmt.h"

static char *dir, *cfg;

static int setup(void **st)
{
    const char *plugins = getenv("BATON_PLUGINS"), *src = getenv("BATON_SRC"),
               *bin = getenv("BATON_BIN");
    if (!plugins || !src || !bin)
        return -1;
    dir = tmpdir_make("campaign-serve");
    char *text;
    if (asprintf(
            &text,
            "baton: { data_dir = \"var\"; plugin_path = [ \"%s\" ]; log = { level = \"error\"; }; "
            "};\n"
            "sources: { crm: { plugin = \"source_sqlite\"; path = \"var/crm.db\"; schema = "
            "\"%s/conf/schema.cfg\"; }; };\n"
            "profiles = \"crm\";\n"
            "channels: { mail: { plugin = \"channel_directmail\"; dir = \"var/exports\"; }; };\n"
            "campaigns = [ \"campaigns\" ];\n",
            plugins, src) < 0)
        abort();
    cfg = file_write(dir, "baton.cfg", text);
    free(text);
    char *sub;
    if (asprintf(&sub, "%s/campaigns", dir) < 0 || mkdir(sub, 0755) != 0)
        abort();
    free(sub);
    char *c = file_write(dir, "campaigns/hourly.cfg",
                         "campaign: {\n  name = \"hourly\";\n"
                         "  schedule = { at = \"2026-01-01T08:00:00Z\"; repeat = \"1h\"; };\n"
                         "  activities = (\n"
                         "    { id = \"g\"; type = \"build_audience\"; dimension = \"profiles\"; "
                         "filter = \"tier == 'gold'\"; },\n"
                         "    { id = \"out\"; type = \"send\"; channel = \"mail\"; input = \"g\"; "
                         "columns = [ \"id\" ]; }\n"
                         "  );\n};\n");
    free(c);
    char *cmd, *out, *err;
    if (asprintf(&cmd, "%s -c %s sample-data --profiles 500", bin, cfg) < 0)
        abort();
    int rc = run_capture(cmd, &out, &err);
    free(cmd);
    free(out);
    free(err);
    return rc;
}

static int teardown(void **st)
{
    tmpdir_remove(dir);
    free(dir);
    free(cfg);
    return 0;
}

static int64_t ts(const char *s)
{
    int64_t t;
    assert_int_equal(timestamp_parse(s, strlen(s), &t), 0);
    return t;
}

static void runs(int64_t *n, char *last_trigger)
{
    app a;
    diag d;
    diag_init(&d);
    assert_int_equal(app_open(&a, cfg, 0, &d), 0);
    store s;
    char err[256];
    assert_int_equal(store_open(&s, a.conf.data_dir, err, sizeof err), 0);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(s.db,
                                        "SELECT count(*), (SELECT \"trigger\" FROM campaign_runs "
                                        "ORDER BY id DESC LIMIT 1) FROM campaign_runs",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    *n = sqlite3_column_int64(st, 0);
    snprintf(last_trigger, 16, "%s",
             sqlite3_column_text(st, 1) ? (const char *)sqlite3_column_text(st, 1) : "");
    sqlite3_finalize(st);
    store_close(&s);
    app_close(&a);
    diag_free(&d);
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

static void test_catch_up_once_then_on_schedule(void **st)
{
    int64_t n;
    char trig[16];
    /* nothing due before `at` */
    assert_int_equal(tick(ts("2026-01-01T07:59:00Z")), 0);
    /* down since before 08:00: five slots missed by 12:30, one run */
    assert_int_equal(tick(ts("2026-01-01T12:30:00Z")), 1);
    runs(&n, trig);
    assert_int_equal(n, 1);
    assert_string_equal(trig, "catch-up");
    /* the same slot never runs twice */
    assert_int_equal(tick(ts("2026-01-01T12:59:00Z")), 0);
    /* the next one, on schedule */
    assert_int_equal(tick(ts("2026-01-01T13:00:05Z")), 1);
    runs(&n, trig);
    assert_int_equal(n, 2);
    assert_string_equal(trig, "schedule");
}

static void test_scheduler_thread_starts_and_stops(void **st)
{
    campaign_scheduler *s = campaign_scheduler_start(cfg, 60000, NULL, NULL, NULL);
    assert_non_null(s);
    campaign_scheduler_stop(s); /* joins at once, even mid-wait */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_catch_up_once_then_on_schedule),
        cmocka_unit_test(test_scheduler_thread_starts_and_stops),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
