/* The journey commands through the baton binary: `journey test --json`
 * prints exactly the members of docs/cli.md, a disabled channel's node is in
 * the path but not in sent, malformed lines count as dead letters;
 * `baton check` reports a broken journey file with file:line and exits 2;
 * usage errors exit 2. */
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

#include "support/fs.h"

static char *dir;

static int setup(void **state)
{
    dir = tmpdir_make("jcli");
    char text[2048], jdir[1024];
    snprintf(
        text, sizeof text,
        "baton: { data_dir = \"var\"; plugin_path = [ \"%s\" ]; };\n"
        "channels: { mail: { plugin = \"channel_directmail\"; dir = \"var/out\"; };\n"
        "  sms: { enabled = false; plugin = \"channel_sms\"; url = \"http://127.0.0.1:1/\"; }; };\n"
        "journeys = [ \"journeys\" ];\n",
        getenv("BATON_PLUGINS"));
    free(file_write(dir, "baton.cfg", text));
    snprintf(jdir, sizeof jdir, "%s/journeys", dir);
    mkdir(jdir, 0755);
    free(file_write(
        jdir, "j.cfg",
        "journey: { name = \"j\"; entry = { event = \"go\"; filter = \"event.n > 0\"; };\n"
        "  exit = ( { event = \"stop\"; } ); start = \"w\"; nodes = (\n"
        "  { id = \"w\"; type = \"wait\"; duration = \"1h\"; next = \"c\"; },\n"
        "  { id = \"c\"; type = \"condition\"; branches = ( { when = \"event.n > 5\"; next = "
        "\"sms\"; } ); otherwise = \"mail\"; },\n"
        "  { id = \"sms\"; type = \"send\"; channel = \"sms\"; text = \"hi\"; next = \"e\"; },\n"
        "  { id = \"mail\"; type = \"send\"; channel = \"mail\"; text = \"hi\"; next = \"r\"; },\n"
        "  { id = \"r\"; type = \"wait_event\"; event = \"buy\"; timeout = \"1d\"; on_event = "
        "\"e\"; on_timeout = \"e\"; },\n"
        "  { id = \"e\"; type = \"end\"; } ); };\n"));
    free(file_write(dir, "events.jsonl",
                    "{\"id\": \"1\", \"type\": \"go\", \"profile\": \"a\", \"time\": "
                    "\"2026-11-23T10:00:00Z\", \"data\": {\"n\": 9}}\n"
                    "{\"id\": \"2\", \"type\": \"go\", \"profile\": \"b\", \"time\": "
                    "\"2026-11-23T10:00:00Z\", \"data\": {\"n\": 1}}\n"
                    "{\"id\": \"3\", \"type\": \"go\", \"profile\": \"c\", \"time\": "
                    "\"2026-11-23T10:00:00Z\", \"data\": {\"n\": 0}}\n"
                    "{\"id\": \"4\", \"type\": \"go\", \"profile\": \"d\", \"time\": "
                    "\"2026-11-23T10:00:00Z\", \"data\": {\"n\": 2}}\n"
                    "{\"id\": \"5\", \"type\": \"stop\", \"profile\": \"d\", \"time\": "
                    "\"2026-11-23T10:30:00Z\"}\n"
                    "not an event\n"
                    "{\"id\": \"6\", \"type\": \"go\"}\n"));
    return 0;
}

static int teardown(void **state)
{
    tmpdir_remove(dir);
    free(dir);
    return 0;
}

static int baton(const char *args, char **out, char **err)
{
    return run_baton(dir, "baton.cfg", out, err, "%s", args);
}

static void test_journey_test_json(void **state)
{
    char *out = NULL, *err = NULL;
    assert_int_equal(baton("journey test j --events events.jsonl --json", &out, &err), 0);
    json_error_t je;
    json_t *o = json_loads(out, 0, &je);
    if (!o)
        fail_msg("not JSON: %s\n%s", je.text, out);
    /* exactly these members */
    assert_int_equal(json_object_size(o), 5);
    assert_string_equal(json_string_value(json_object_get(o, "journey")), "j");
    assert_int_equal(json_array_size(json_object_get(o, "not_entered")), 0);
    assert_int_equal(json_array_size(json_object_get(o, "notes")), 0);
    assert_int_equal(json_integer_value(json_object_get(o, "dead_letters")), 2);
    json_t *p = json_object_get(o, "profiles");
    assert_int_equal(json_object_size(p), 3); /* c never entered */
    json_t *a = json_object_get(p, "a"), *b = json_object_get(p, "b"), *d = json_object_get(p, "d");
    assert_int_equal(json_object_size(a), 5); /* state, path, sent, steps, sends */
    assert_string_equal(json_string_value(json_object_get(a, "state")), "completed");
    char *s = json_dumps(json_object_get(a, "path"), JSON_COMPACT);
    assert_string_equal(s, "[\"w\",\"c\",\"sms\",\"e\"]");
    free(s);
    assert_int_equal(json_array_size(json_object_get(a, "sent")), 0); /* sms is off */
    s = json_dumps(json_object_get(b, "sent"), JSON_COMPACT);
    assert_string_equal(s, "[{\"node\":\"mail\",\"channel\":\"mail\"}]");
    free(s);
    assert_string_equal(json_string_value(json_object_get(b, "state")), "completed");
    assert_string_equal(json_string_value(json_object_get(d, "state")), "exited");
    json_decref(o);
    free(out);
    free(err);
    /* --until stops the clock: b waits at r */
    assert_int_equal(
        baton("journey test j --events events.jsonl --json --until 2026-11-23T12:00:00Z", &out,
              &err),
        0);
    o = json_loads(out, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_object_get(o, "profiles"), "b"), "state")),
                        "waiting");
    json_decref(o);
    free(out);
    free(err);
}

static void test_usage_and_errors(void **state)
{
    char *out = NULL, *err = NULL;
    assert_int_equal(baton("journey test nope --events events.jsonl", &out, &err), 2);
    assert_non_null(strstr(err, "no journey named 'nope'"));
    free(out);
    free(err);
    assert_int_equal(baton("journey test j", &out, &err), 2);
    free(out);
    free(err);
    assert_int_equal(baton("journey test j --events missing.jsonl", &out, &err), 2);
    assert_non_null(strstr(err, "missing.jsonl"));
    free(out);
    free(err);
    assert_int_equal(baton("journey frobnicate", &out, &err), 2);
    free(out);
    free(err);
    assert_int_equal(baton("journey status j --json", &out, &err), 0);
    json_t *o = json_loads(out, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(o, "profiles")), 0);
    assert_non_null(json_object_get(json_object_get(o, "nodes"), "r"));
    json_decref(o);
    free(out);
    free(err);
    assert_int_equal(baton("profile nobody --json", &out, &err), 0);
    free(out);
    free(err);
    /* a broken journey file: baton check names file and line, exits 2 */
    char jdir[1024];
    snprintf(jdir, sizeof jdir, "%s/journeys", dir);
    free(file_write(jdir, "k.cfg",
                    "journey: { name = \"k\"; entry = { event = \"go\"; };\n"
                    "  start = \"x\"; nodes = ( { id = \"x\"; type = \"send\"; channel = \"mial\"; "
                    "text = \"t\"; next = \"y\"; } ); };\n"));
    assert_int_equal(baton("check", &out, &err), 2);
    assert_non_null(strstr(err, "journeys/k.cfg:2: node 'x': channel = \"mial\" names no "
                                "configured channel (did you mean 'mail'?)"));
    assert_non_null(strstr(err, "journeys/k.cfg:2: node 'x': next = \"y\" names no node"));
    free(out);
    free(err);
}

/* journey test --mocks: lookups and actions answered from the file (and
 * no lookup or action reaches the network without it: null and {}, said
 * in "notes"); each step's simulated time, each send's rendered content
 * and what consent decided; a profile the profiles source lacks does not
 * enter (a dead letter, "profile not found"). */
static void test_journey_test_mocks(void **state)
{
    char sub[1024], text[4096], cmd[2048];
    snprintf(sub, sizeof sub, "%s/m", dir);
    mkdir(sub, 0755);
    snprintf(
        text, sizeof text,
        "baton: { data_dir = \"var\"; plugin_path = [ \"%s\" ]; };\n"
        "sources: { crm: { plugin = \"source_sqlite\"; path = \"crm.db\"; schema = "
        "\"schema.cfg\"; };\n"
        "  weather: { plugin = \"source_http\"; url = \"http://127.0.0.1:1/w\"; fields = [ "
        "\"temperature\" ]; timeout = \"1s\"; }; };\n"
        "profiles = \"crm\";\n"
        "channels: { mail: { plugin = \"channel_directmail\"; dir = \"var/out\"; consent = "
        "\"ok\"; }; };\n"
        "actions: { loyalty: { plugin = \"action_http\"; url = \"http://127.0.0.1:1/\"; }; };\n"
        "journeys = [ \"journeys\" ];\n",
        getenv("BATON_PLUGINS"));
    free(file_write(sub, "baton.cfg", text));
    free(file_write(sub, "schema.cfg",
                    "entities: { profiles: { key = \"id\"; fields: { id = \"string\"; ok = "
                    "\"bool\"; }; }; };\n"));
    snprintf(cmd, sizeof cmd,
             "sqlite3 %s/crm.db \"CREATE TABLE profiles (id TEXT PRIMARY KEY, ok INTEGER); "
             "INSERT INTO profiles VALUES ('a', 1), ('b', 0)\"",
             sub);
    assert_int_equal(system(cmd), 0);
    char jdir[1100];
    snprintf(jdir, sizeof jdir, "%s/journeys", sub);
    mkdir(jdir, 0755);
    free(file_write(
        jdir, "m.cfg",
        "journey: { name = \"m\"; entry = { event = \"go\"; }; start = \"pts\"; nodes = (\n"
        "  { id = \"pts\"; type = \"action\"; action = \"loyalty\"; next = \"w\"; },\n"
        "  { id = \"w\"; type = \"wait\"; duration = \"2h\"; next = \"c\"; },\n"
        "  { id = \"c\"; type = \"condition\"; branches = ( { when = \"weather.temperature < 5\"; "
        "next = \"cold\"; } ); otherwise = \"warm\"; },\n"
        "  { id = \"cold\"; type = \"send\"; channel = \"mail\"; text = \"Cold! {{ pts.balance }} "
        "points for {{ profile.id }}\"; next = \"e\"; },\n"
        "  { id = \"warm\"; type = \"send\"; channel = \"mail\"; text = \"Warm\"; next = \"e\"; "
        "},\n"
        "  { id = \"e\"; type = \"end\"; } ); };\n"));
    free(file_write(sub, "events.jsonl",
                    "{\"id\": \"1\", \"type\": \"go\", \"profile\": \"a\", \"time\": "
                    "\"2026-11-23T10:00:00Z\"}\n"
                    "{\"id\": \"2\", \"type\": \"go\", \"profile\": \"b\", \"time\": "
                    "\"2026-11-23T10:00:00Z\"}\n"
                    "{\"id\": \"3\", \"type\": \"go\", \"profile\": \"zz\", \"time\": "
                    "\"2026-11-23T10:00:00Z\"}\n"));
    free(file_write(sub, "mocks.json",
                    "{\"lookups\": {\"weather\": {\"temperature\": -3}},"
                    " \"actions\": {\"pts\": {\"balance\": 120}}}\n"));
    char *out = NULL, *err = NULL;
    assert_int_equal(run_baton(sub, "baton.cfg", &out, &err, "%s",
                               "journey test m --events events.jsonl --mocks mocks.json --json"),
                     0);
    json_t *o = json_loads(out, 0, NULL);
    if (!o)
        fail_msg("not JSON:\n%s\n%s", out, err);
    json_t *p = json_object_get(o, "profiles");
    assert_null(json_object_get(p, "zz"));
    assert_int_equal(json_integer_value(json_object_get(o, "dead_letters")), 1);
    char *s = json_dumps(json_object_get(o, "not_entered"), JSON_COMPACT);
    assert_non_null(strstr(s, "\"profile\":\"zz\",\"reason\":\"profile not found\""));
    free(s);
    assert_int_equal(json_array_size(json_object_get(o, "notes")), 0);
    json_t *a = json_object_get(p, "a");
    s = json_dumps(json_object_get(a, "steps"), JSON_COMPACT);
    assert_string_equal(s, "[{\"node\":\"pts\",\"at\":\"2026-11-23T10:00:00Z\"},{\"node\":\"w\","
                           "\"at\":\"2026-11-23T10:00:00Z\"},{\"node\":\"c\",\"at\":\"2026-11-"
                           "23T12:00:00Z\"},{\"node\":\"cold\",\"at\":\"2026-11-23T12:00:00Z\"},{"
                           "\"node\":\"e\",\"at\":\"2026-11-23T12:00:00Z\"}]");
    free(s);
    json_t *send = json_array_get(json_object_get(a, "sends"), 0);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(send, "content"), "text")),
        "Cold! 120 points for a");
    assert_string_equal(json_string_value(json_object_get(send, "outcome")), "would be sent");
    send = json_array_get(json_object_get(json_object_get(p, "b"), "sends"), 0);
    assert_string_equal(json_string_value(json_object_get(send, "outcome")), "skipped: no consent");
    assert_true(json_is_false(
        json_object_get(json_object_get(json_object_get(send, "decided"), "consent"), "given")));
    json_decref(o);
    free(out);
    free(err);
    /* without mocks: nothing reaches the network; null and {}, said so */
    assert_int_equal(run_baton(sub, "baton.cfg", &out, &err, "%s",
                               "journey test m --events events.jsonl --json"),
                     0);
    o = json_loads(out, 0, NULL);
    s = json_dumps(json_object_get(o, "notes"), JSON_COMPACT);
    assert_non_null(strstr(s, "lookup 'weather' has no mock (--mocks): read as null"));
    assert_non_null(strstr(s, "action node 'pts' has no mock (--mocks): its answer is {}"));
    free(s);
    s = json_dumps(json_object_get(json_object_get(json_object_get(o, "profiles"), "a"), "path"),
                   JSON_COMPACT);
    assert_string_equal(s, "[\"pts\",\"w\",\"c\",\"warm\",\"e\"]");
    free(s);
    json_decref(o);
    free(out);
    free(err);
    free(file_write(sub, "bad.json", "{\"lookups\": [}"));
    assert_int_equal(run_baton(sub, "baton.cfg", &out, &err, "%s",
                               "journey test m --events events.jsonl --mocks bad.json"),
                     2);
    assert_non_null(strstr(err, "bad.json:1:"));
    free(out);
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_journey_test_json),
        cmocka_unit_test(test_usage_and_errors),
        cmocka_unit_test(test_journey_test_mocks),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
