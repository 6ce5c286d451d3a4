/* `baton journey test` with conditions over the profile's orders
 * (count/sum with `where`) on the sample CRM of `baton sample-data`: every
 * profile takes the branch SQLite says it should (queried directly here,
 * as the oracle), and `baton check` names a misspelt link with file:line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "support/fs.h"

#define NPROFILES 150
#define NEVENTS 60

static char *dir;

static int baton(const char *args, char **out, char **err)
{
    return run_baton(dir, "baton.cfg", out, err, "%s", args);
}

static const char journey_text[] =
    "journey: { name = \"spenders\"; entry = { event = \"visit\"; filter = "
    "\"exists(profile.orders)\"; };\n"
    "  start = \"which\"; nodes = (\n"
    "    { id = \"which\"; type = \"condition\";\n"
    "      branches = ( { when = \"count(profile.orders where amount > event.min and created_at > "
    "now() - 365d) >= 2\"; next = \"vip\"; },\n"
    "                   { when = \"sum(profile.orders.amount where created_at > now() - 365d) > "
    "500\"; next = \"big\"; } );\n"
    "      otherwise = \"plain\"; },\n"
    "    { id = \"vip\"; type = \"send\"; channel = \"mail\";\n"
    "      text = \"{{#each profile.orders limit 3}}{{ id }} {{/each}}\"; next = \"done\"; },\n"
    "    { id = \"big\"; type = \"end\"; },\n"
    "    { id = \"plain\"; type = \"end\"; },\n"
    "    { id = \"done\"; type = \"end\"; } ); };\n";

static int setup(void **state)
{
    dir = tmpdir_make("jagg");
    char text[2048], jdir[1024];
    snprintf(
        text, sizeof text,
        "baton: { data_dir = \"var\"; plugin_path = [ \"%s\" ]; log = { level = \"warn\"; }; };\n"
        "sources: { crm: { plugin = \"source_sqlite\"; path = \"var/crm.db\"; schema = "
        "\"%s/conf/schema.cfg\"; }; };\n"
        "profiles = \"crm\";\n"
        "channels: { mail: { plugin = \"channel_directmail\"; dir = \"var/out\"; }; };\n"
        "journeys = [ \"journeys\" ];\n",
        getenv("BATON_PLUGINS"), getenv("BATON_SRC"));
    free(file_write(dir, "baton.cfg", text));
    snprintf(jdir, sizeof jdir, "%s/journeys", dir);
    mkdir(jdir, 0755);
    free(file_write(jdir, "spenders.cfg", journey_text));
    char *out = NULL, *err = NULL;
    snprintf(text, sizeof text, "sample-data --profiles %d --seed 11", NPROFILES);
    int rc = baton(text, &out, &err);
    if (rc)
        fprintf(stderr, "sample-data: %s%s\n", out ? out : "", err ? err : "");
    free(out);
    free(err);
    return rc;
}

static int teardown(void **state)
{
    tmpdir_remove(dir);
    free(dir);
    return 0;
}

/* The branch SQLite gives for profile id at time now (unix s). */
static const char *oracle(sqlite3 *db, const char *id, double min, int64_t now)
{
    char since[32];
    time_t t = (time_t)(now - 365 * 86400);
    strftime(since, sizeof since, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
    sqlite3_stmt *st;
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT count(*) FROM orders WHERE profile_id = ?1", -1, &st, NULL),
        SQLITE_OK);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int any = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (!any)
        return NULL; /* the entry filter keeps them out */
    assert_int_equal(
        sqlite3_prepare_v2(db,
                           "SELECT (SELECT count(*) FROM orders WHERE profile_id = ?1 AND "
                           "amount > ?2 AND created_at > ?3), (SELECT sum(amount) FROM orders "
                           "WHERE profile_id = ?1 AND created_at > ?3)",
                           -1, &st, NULL),
        SQLITE_OK);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 2, min);
    sqlite3_bind_text(st, 3, since, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int n = sqlite3_column_int(st, 0);
    int big = sqlite3_column_type(st, 1) != SQLITE_NULL && sqlite3_column_double(st, 1) > 500;
    sqlite3_finalize(st);
    return n >= 2 ? "vip" : big ? "big" : "plain";
}

static void test_branches_match_sql(void **state)
{
    int64_t now = (int64_t)time(NULL);
    char ts[32];
    time_t tt = (time_t)now;
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", gmtime(&tt));
    /* one visit each for some profiles, one for a profile that does not
     * exist; event.min varies so the `where` reads the event too */
    char *events = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&events, &len);
    for (int i = 0; i < NEVENTS; i++)
        fprintf(f,
                "{\"id\": \"e%d\", \"type\": \"visit\", \"profile\": \"p%d\", \"time\": \"%s\", "
                "\"data\": {\"min\": %d}}\n",
                i, 1 + (i * 7) % NPROFILES, ts, 50 + (i % 5) * 50);
    fprintf(f,
            "{\"id\": \"ghost\", \"type\": \"visit\", \"profile\": \"nobody\", \"time\": \"%s\"}\n",
            ts);
    fclose(f);
    free(file_write(dir, "events.jsonl", events));
    free(events);

    char *out = NULL, *err = NULL;
    assert_int_equal(baton("journey test spenders --events events.jsonl --json", &out, &err), 0);
    json_error_t je;
    json_t *o = json_loads(out, 0, &je);
    if (!o)
        fail_msg("not JSON: %s\n%s\n%s", je.text, out, err);
    json_t *profiles = json_object_get(o, "profiles");
    char *dbpath;
    assert_true(asprintf(&dbpath, "%s/var/crm.db", dir) > 0);
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    int seen[3] = {0}, checked = 0;
    for (int i = 0; i < NEVENTS; i++) {
        char id[16];
        snprintf(id, sizeof id, "p%d", 1 + (i * 7) % NPROFILES);
        const char *want = oracle(db, id, 50 + (i % 5) * 50, now);
        json_t *p = json_object_get(profiles, id);
        if (!want) {
            if (p)
                fail_msg("%s has no orders but entered", id);
            continue;
        }
        if (!p)
            fail_msg("%s has orders but did not enter:\n%s", id, out);
        json_t *path = json_object_get(p, "path");
        const char *got = json_string_value(json_array_get(path, 1));
        if (!got || strcmp(got, want))
            fail_msg("%s (min %d): path goes to %s, SQLite says %s", id, 50 + (i % 5) * 50,
                     got ? got : "(nothing)", want);
        assert_string_equal(json_string_value(json_object_get(p, "state")), "completed");
        seen[!strcmp(want, "vip") ? 0 : !strcmp(want, "big") ? 1 : 2]++;
        if (!strcmp(want, "vip"))
            assert_int_equal(json_array_size(json_object_get(p, "sent")), 1);
        checked++;
    }
    assert_null(json_object_get(profiles, "nobody")); /* no orders: the filter is false */
    /* every branch is taken, or the test proves little */
    if (!seen[0] || !seen[1] || !seen[2])
        fail_msg("branches taken: vip %d, big %d, plain %d", seen[0], seen[1], seen[2]);
    print_message("%d profiles checked against SQLite (vip %d, big %d, plain %d)\n", checked,
                  seen[0], seen[1], seen[2]);
    sqlite3_close(db);
    free(dbpath);
    json_decref(o);
    free(out);
    free(err);
}

static void test_check_names_the_link(void **state)
{
    char *out = NULL, *err = NULL;
    assert_int_equal(baton("check", &out, &err), 0);
    free(out);
    free(err);
    char jdir[1024];
    snprintf(jdir, sizeof jdir, "%s/journeys", dir);
    char *path = file_write(jdir, "broken.cfg",
                            "journey: { name = \"broken\";\n"
                            "  entry = { event = \"visit\"; filter = \"count(profile.order where "
                            "amount > 5) > 0\"; };\n"
                            "  start = \"e\"; nodes = ( { id = \"e\"; type = \"end\"; } ); };\n");
    assert_int_equal(baton("check", &out, &err), 2);
    if (!strstr(err, "journeys/broken.cfg:2: entry: filter: 1:7: unknown field 'order' in "
                     "profiles (did you mean 'orders'?)"))
        fail_msg("unexpected check output:\n%s", err);
    remove(path);
    free(path);
    free(out);
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_branches_match_sql),
        cmocka_unit_test(test_check_names_the_link),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
