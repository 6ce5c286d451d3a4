/* Quiet hours on each profile's own wall clock (profiles_timezone):
 * a campaign run through the binary defers exactly the profiles whose
 * zone is inside the window (an unknown or empty zone falls back on
 * caps.quiet_hours.timezone) and sends the others at once; `journey test`
 * decides the same per profile. The window is placed around the real
 * clock, so the test holds at any hour it runs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "support/fs.h"

static char *dir;

/* 3 profiles in 4 live in UTC+6, outside the window; the others in a zone
 * that is no zone, or none: the window's own zone, UTC, inside it */
#define ZONES                                                                                      \
    "UPDATE profiles SET tz = CASE rowid % 4 WHEN 0 THEN 'Etc/GMT-6' WHEN 1 THEN "                 \
    "'Mars/Olympus' WHEN 2 THEN NULL ELSE 'Etc/GMT-6' END"

static int baton(char **out, char **err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int baton(char **out, char **err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = run_baton_v(dir, "baton.cfg", out, err, fmt, ap);
    va_end(ap);
    return rc;
}

static long long sql_count(const char *db, const char *sql)
{
    char *cmd, *out = NULL;
    if (asprintf(&cmd, "sqlite3 %s/%s \"%s\"", dir, db, sql) < 0)
        abort();
    int rc = run_capture(cmd, &out, NULL);
    if (rc != 0)
        fail_msg("sqlite3 failed: %s", sql);
    long long n = atoll(out);
    free(cmd);
    free(out);
    return n;
}

static int setup(void **st)
{
    const char *plugins = getenv("BATON_PLUGINS"), *src = getenv("BATON_SRC");
    if (!plugins || !src)
        return -1;
    dir = tmpdir_make("quiet-zones");
    /* quiet from an hour ago to three hours ahead, in UTC: now is well
     * inside it in UTC and well outside it in UTC+6 */
    time_t now = time(NULL);
    int h = gmtime(&now)->tm_hour;
    char text[4096];
    snprintf(text, sizeof text,
             "baton: { data_dir = \"var\"; plugin_path = [ \"%s\" ]; log = { level = \"warn\"; "
             "}; };\n"
             "sources: { crm: { plugin = \"source_sqlite\"; path = \"var/crm.db\"; schema = "
             "\"schema.cfg\"; }; };\n"
             "profiles = \"crm\";\n"
             "profiles_timezone = \"tz\";\n"
             "caps: { quiet_hours = { from = \"%02d:00\"; to = \"%02d:00\"; timezone = \"UTC\"; "
             "}; };\n"
             "channels: { mail: { plugin = \"channel_directmail\"; dir = \"var/exports\"; }; };\n"
             "campaigns = [ \"campaigns\" ];\n"
             "journeys = [ \"journeys\" ];\n",
             plugins, (h + 23) % 24, (h + 3) % 24);
    free(file_write(dir, "baton.cfg", text));
    /* the sample schema with the zone field */
    char path[1024];
    snprintf(path, sizeof path, "%s/conf/schema.cfg", src);
    char *schema = file_read(path, NULL);
    assert_non_null(schema);
    const char *at = strstr(schema, "score = \"float\";");
    assert_non_null(at);
    size_t cut = (size_t)(at - schema) + strlen("score = \"float\";");
    char *mine;
    if (asprintf(&mine, "%.*s tz = \"string\";%s", (int)cut, schema, schema + cut) < 0)
        abort();
    free(file_write(dir, "schema.cfg", mine));
    free(mine);
    free(schema);
    snprintf(path, sizeof path, "%s/campaigns", dir);
    mkdir(path, 0755);
    free(file_write(path, "all.cfg",
                    "campaign: { name = \"all\"; activities = (\n"
                    "  { id = \"a\"; type = \"build_audience\"; dimension = \"profiles\"; },\n"
                    "  { id = \"letter\"; type = \"send\"; channel = \"mail\"; input = \"a\"; "
                    "columns = [ \"id\", \"tz\" ]; } ); };\n"));
    snprintf(path, sizeof path, "%s/journeys", dir);
    mkdir(path, 0755);
    free(file_write(path, "j.cfg",
                    "journey: { name = \"j\"; entry = { event = \"go\"; }; start = \"m\";\n"
                    "  nodes = ( { id = \"m\"; type = \"send\"; channel = \"mail\"; text = "
                    "\"hi\"; next = \"e\"; },\n"
                    "            { id = \"e\"; type = \"end\"; } ); };\n"));
    char *out = NULL, *err = NULL;
    int rc = baton(&out, &err, "sample-data --profiles 400 --seed 3");
    if (rc != 0)
        fprintf(stderr, "sample-data: %s\n", err);
    free(out);
    free(err);
    if (rc != 0)
        return -1;
    char *cmd;
    if (asprintf(&cmd, "sqlite3 %s/var/crm.db \"ALTER TABLE profiles ADD COLUMN tz TEXT; %s\"", dir,
                 ZONES) < 0)
        abort();
    rc = run_capture(cmd, NULL, NULL);
    free(cmd);
    return rc == 0 ? 0 : -1;
}

static int teardown(void **st)
{
    tmpdir_remove(dir);
    free(dir);
    return 0;
}

static void test_campaign_defers_by_profile_zone(void **st)
{
    char *out = NULL, *err = NULL;
    int rc = baton(&out, &err, "campaign run all");
    if (rc != 0)
        fail_msg("campaign run: %d\n%s\n%s", rc, out, err);
    free(out);
    free(err);
    long long away =
        sql_count("var/crm.db", "SELECT count(*) FROM profiles WHERE tz = 'Etc/GMT-6'");
    long long home =
        sql_count("var/crm.db", "SELECT count(*) FROM profiles WHERE tz IS NOT 'Etc/GMT-6'");
    assert_true(away > 0 && home > 0);
    /* every profile in UTC+6 sent at once, every other one deferred */
    assert_int_equal(sql_count("var/state.db", "SELECT count(*) FROM deliveries WHERE status = "
                                               "'deferred' AND reason LIKE 'quiet hours:%'"),
                     home);
    assert_int_equal(
        sql_count("var/state.db", "SELECT count(*) FROM deliveries WHERE status = 'sent'"), away);
    /* the deferred ones are exactly the profiles outside UTC+6 */
    char *cmd;
    if (asprintf(&cmd,
                 "sqlite3 %s/var/state.db \"ATTACH '%s/var/crm.db' AS crm; SELECT count(*) FROM "
                 "deliveries d JOIN crm.profiles p ON p.id = d.profile_id WHERE d.status = "
                 "'deferred' AND p.tz = 'Etc/GMT-6'\"",
                 dir, dir) < 0)
        abort();
    assert_int_equal(run_capture(cmd, &out, NULL), 0);
    assert_int_equal(atoll(out), 0);
    free(out);
    free(cmd);
}

static void test_journey_test_decides_by_profile_zone(void **st)
{
    /* a profile in UTC+6 and one whose zone is no zone, at the real hour */
    char *pa = NULL, *pm = NULL;
    char *cmd;
    if (asprintf(&cmd,
                 "sqlite3 %s/var/crm.db \"SELECT id FROM profiles WHERE tz = 'Etc/GMT-6' LIMIT "
                 "1; SELECT id FROM profiles WHERE tz = 'Mars/Olympus' LIMIT 1\"",
                 dir) < 0)
        abort();
    char *ids = NULL;
    assert_int_equal(run_capture(cmd, &ids, NULL), 0);
    free(cmd);
    char *nl = strchr(ids, '\n');
    assert_non_null(nl);
    *nl = '\0';
    pa = ids;
    pm = nl + 1;
    pm[strcspn(pm, "\n")] = '\0';
    time_t now = time(NULL);
    char ts[32];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    char events[1024];
    snprintf(events, sizeof events,
             "{\"id\": \"1\", \"type\": \"go\", \"profile\": \"%s\", \"time\": \"%s\"}\n"
             "{\"id\": \"2\", \"type\": \"go\", \"profile\": \"%s\", \"time\": \"%s\"}\n",
             pa, ts, pm, ts);
    free(file_write(dir, "events.jsonl", events));
    char *out = NULL, *err = NULL;
    int rc = baton(&out, &err, "journey test j --events events.jsonl --json");
    if (rc != 0)
        fail_msg("journey test: %d\n%s", rc, err);
    json_t *o = json_loads(out, 0, NULL);
    assert_non_null(o);
    json_t *p = json_object_get(o, "profiles");
    json_t *sa = json_array_get(json_object_get(json_object_get(p, pa), "sends"), 0);
    json_t *sm = json_array_get(json_object_get(json_object_get(p, pm), "sends"), 0);
    assert_non_null(sa);
    assert_non_null(sm);
    assert_string_equal(json_string_value(json_object_get(sa, "outcome")), "would be sent");
    assert_string_equal(json_string_value(json_object_get(sm, "outcome")), "deferred");
    json_decref(o);
    free(out);
    free(err);
    free(ids);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_campaign_defers_by_profile_zone),
        cmocka_unit_test(test_journey_test_decides_by_profile_zone),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
