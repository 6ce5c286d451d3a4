/* Journeys under `baton serve` on a PostgreSQL profiles source: an
 * update_profile node writes the row (an integer key, as real tables
 * have, bound as a parameter), the next nodes read the new values and
 * count the profile's recent orders (computed by PostgreSQL, keyed by the
 * event's profile as an integer), and a kill -9 then restart does not
 * write it again (points would be 30). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "support/fs.h"
#include "support/pg_server.h"

static pg_server pg;
static char *dir;
static pid_t serving;

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static long pg_long(const char *sql)
{
    char *out = NULL;
    if (pg_server_psql(&pg, sql, &out) != 0)
        fail_msg("psql failed: %s", sql);
    long v = atol(out);
    free(out);
    return v;
}

static pid_t start_serve(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        char *cmd;
        if (asprintf(&cmd, "exec %s -c %s/baton.cfg serve >>%s/baton.log 2>&1", getenv("BATON_BIN"),
                     dir, dir) < 0)
            _exit(127);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    /* serving once its pid is in the lock */
    char path[1024], want[32], got[32];
    snprintf(path, sizeof path, "%s/var/serve.lock", dir);
    snprintf(want, sizeof want, "%ld\n", (long)pid);
    for (int i = 0; i < 1000; i++) {
        FILE *f = fopen(path, "r");
        int same = f && fgets(got, sizeof got, f) && !strcmp(got, want);
        if (f)
            fclose(f);
        if (same)
            return serving = pid;
        nap_ms(10);
    }
    fail_msg("baton serve did not start (see %s/baton.log)", dir);
    return -1;
}

static void stop_serve(int sig)
{
    if (serving > 0) {
        kill(serving, sig);
        waitpid(serving, NULL, 0);
        serving = 0;
    }
}

static int setup(void **st)
{
    if (!getenv("BATON_BIN") || !getenv("BATON_PLUGINS") || pg_server_start(&pg) != 0)
        return -1;
    dir = tmpdir_make("journey-pg");
    if (pg_server_psql(&pg,
                       "CREATE TABLE profiles (id bigint PRIMARY KEY, tier text, points integer);"
                       "INSERT INTO profiles VALUES (41, 'bronze', 10), (42, 'bronze', 10);"
                       "CREATE TABLE orders (id text PRIMARY KEY, profile_id bigint, amount "
                       "double precision, created_at timestamptz);"
                       /* two each of more than 5 in the last 30 days */
                       "INSERT INTO orders VALUES ('o1', 41, 10, now() - interval '1 day'),"
                       " ('o2', 41, 20, now() - interval '2 days'), ('o3', 41, 1, now()),"
                       " ('o4', 41, 50, now() - interval '90 days'),"
                       " ('o5', 42, 10, now() - interval '1 day'),"
                       " ('o6', 42, 30, now() - interval '3 days'), ('o7', NULL, 99, now())",
                       NULL) != 0)
        return -1;
    free(file_write(dir, "schema.cfg",
                    "entities: { profiles: { key = \"id\";\n"
                    "  fields: { id = \"int\"; tier = \"string\"; points = \"int\"; }; };\n"
                    "  orders: { key = \"id\"; fields: { id = \"string\"; profile_id = \"int\";\n"
                    "    amount = \"float\"; created_at = \"timestamp\"; };\n"
                    "    links: { profile = { to = \"profiles\"; via = \"profile_id\"; reverse = "
                    "\"orders\"; }; }; }; };\n"));
    char text[4096];
    snprintf(text, sizeof text,
             "baton: { data_dir = \"var\"; plugin_path = [ \"%s\" ]; log = { level = \"info\"; "
             "}; };\n"
             "sources: { crm: { plugin = \"source_postgres\"; conninfo = \"%s\"; schema = "
             "\"schema.cfg\"; writable = true; }; };\n"
             "profiles = \"crm\";\n"
             "events: { file: { plugin = \"event_file\"; path = \"events.jsonl\"; follow = true; "
             "poll = \"50ms\"; }; };\n"
             "journeys = [ \"journeys\" ];\n",
             getenv("BATON_PLUGINS"), pg.conninfo);
    free(file_write(dir, "baton.cfg", text));
    char jdir[1024];
    snprintf(jdir, sizeof jdir, "%s/journeys", dir);
    mkdir(jdir, 0755);
    free(file_write(
        jdir, "up.cfg",
        "journey: { name = \"up\"; entry = { event = \"order\"; };\n"
        "  start = \"up\"; nodes = (\n"
        "    { id = \"up\"; type = \"update_profile\"; set = ( { field = \"tier\"; value = "
        "\"'silver'\"; }, { field = \"points\"; value = \"profile.points + 10\"; } ); next = "
        "\"n\"; },\n"
        "    { id = \"n\"; type = \"condition\"; branches = ( { when = \"count(profile.orders "
        "where amount > 5 and created_at > now() - 30d) == 2\"; next = \"c\"; } ); otherwise = "
        "\"bad\"; },\n"
        "    { id = \"c\"; type = \"condition\"; branches = ( { when = \"profile.tier == 'silver' "
        "and profile.points == 20\"; next = \"ok\"; } ); otherwise = \"bad\"; },\n"
        "    { id = \"ok\"; type = \"end\"; }, { id = \"bad\"; type = \"end\"; } ); };\n"));
    free(file_write(dir, "events.jsonl", ""));
    return 0;
}

static int teardown(void **st)
{
    stop_serve(SIGKILL);
    pg_server_stop(&pg);
    if (dir && !getenv("BATON_KEEP_TMP"))
        tmpdir_remove(dir);
    free(dir);
    return 0;
}

static void append_event(const char *id, const char *profile)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/events.jsonl", dir);
    FILE *f = fopen(path, "a");
    assert_non_null(f);
    fprintf(f,
            "{\"id\": \"%s\", \"type\": \"order\", \"profile\": \"%s\", \"time\": "
            "\"2026-11-23T10:00:00Z\"}\n",
            id, profile);
    fclose(f);
}

static void test_update_profile_on_postgres(void **st)
{
    char db[1024];
    snprintf(db, sizeof db, "%s/var/state.db", dir);
    start_serve();
    append_event("u1", "41");
    if (db_wait_for(db, "SELECT count(*) FROM journey_instances WHERE path = 'up n c ok'", 1,
                    20000) != 1) {
        char path[1100];
        snprintf(path, sizeof path, "%s/baton.log", dir);
        char *log = file_read(path, NULL);
        fail_msg("the instance did not reach ok; log:\n%s", log ? log : "");
    }
    assert_int_equal(pg_long("SELECT points FROM profiles WHERE id = 41"), 20);
    assert_int_equal(pg_long("SELECT count(*) FROM profiles WHERE id = 41 AND tier = 'silver'"), 1);
    assert_int_equal(pg_long("SELECT points FROM profiles WHERE id = 42"), 10);
    /* kill -9, restart: the file is read again from the start, the event
     * is a duplicate and the update is not written twice */
    stop_serve(SIGKILL);
    start_serve();
    append_event("u2", "42");
    assert_int_equal(db_wait_for(db,
                                 "SELECT count(*) FROM journey_instances WHERE path = 'up n c ok'",
                                 2, 20000),
                     2);
    nap_ms(500);
    assert_int_equal(pg_long("SELECT points FROM profiles WHERE id = 41"), 20);
    assert_int_equal(pg_long("SELECT points FROM profiles WHERE id = 42"), 20);
    stop_serve(SIGTERM);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_update_profile_on_postgres),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
