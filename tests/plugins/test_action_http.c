/* action_http against tests/support/http_sink.py: the request built from
 * the templates (url, headers, body) and the idempotency key; 2xx OK with
 * the response; 408/429/5xx and no answer RETRY; other 4xx ERROR; auth;
 * settings refused at init. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/app.h"
#include "base/buf.h"
#include "journey/journey.h"
#include "journey/runner.h"
#include "plugin/plugin_host.h"
#include "base/record.h"
#include "support/fs.h"
#include "support/instance.h"
#include "support/server.h"

const baton_plugin *baton_plugin_entry(void);

static test_server sink;
static char *dir;
static char logpath[1024];

static void sink_start(const char *a1, const char *a2, const char *a3, const char *a4)
{
    snprintf(logpath, sizeof logpath, "%s/requests.jsonl", dir);
    assert_int_equal(server_start_http_sink(&sink, logpath, a1, a2, a3, a4), 0);
}

static int setup(void **state)
{
    dir = tmpdir_make("action_http");
    return 0;
}

static int teardown(void **state)
{
    server_stop(&sink);
    memset(&sink, 0, sizeof sink);
    tmpdir_remove(dir);
    free(dir);
    return 0;
}

static instance *action(const char *settings)
{
    char err[512] = "";
    instance *inst =
        test_instance_new(baton_plugin_entry(), "actions", "loyalty", settings, 1, err, sizeof err);
    if (!inst)
        fail_msg("action_http: %s", err);
    return inst;
}

static baton_status call(instance *inst, const char *key, buf *resp, char *reason, size_t len)
{
    record *ctx = record_new();
    record_set_string(ctx, "profile.id", "p42");
    record_set_string(ctx, "profile.tier", "gold");
    record_set_string(ctx, "event.id", "e-1");
    record_set_int(ctx, "points.balance", 120);
    baton_action_call c = {.size = sizeof c, .key = key, .profile_id = "p42", .context = ctx};
    buf_reset(resp);
    baton_status st = instance_action(inst)->invoke(inst->state, &c, resp, reason, len);
    record_free(ctx);
    return st;
}

/* The n-th request the sink recorded (from 0). */
static json_t *request(int n)
{
    char *text = file_read(logpath, NULL);
    assert_non_null(text);
    char *line = text;
    for (int i = 0; i < n && line; i++) {
        line = strchr(line, '\n');
        line = line ? line + 1 : NULL;
    }
    assert_non_null(line);
    json_t *o = json_loadb(line, strcspn(line, "\n"), 0, NULL);
    free(text);
    assert_non_null(o);
    return o;
}

static void test_request_and_response(void **state)
{
    sink_start("--body", "{\"balance\": 170, \"seq\": {seq}}", NULL, NULL);
    char settings[1024];
    snprintf(
        settings, sizeof settings,
        "url = \"http://127.0.0.1:%d/points/{{ profile.id }}?from={{ event.id }}\";\n"
        "body = \"{\\\"id\\\": \\\"{{ profile.id }}\\\", \\\"was\\\": {{ points.balance }}}\";\n"
        "headers = [ \"X-Tier: {{ profile.tier }}\" ]; auth = \"bearer\"; token = \"s3cret\";",
        sink.port);
    instance *inst = action(settings);
    buf resp;
    buf_init(&resp);
    char reason[512] = "";
    assert_int_equal(call(inst, "j:cart:7:points:4", &resp, reason, sizeof reason), BATON_OK);
    json_t *body = json_loads(resp.data, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(body, "balance")), 170);
    json_decref(body);
    json_t *r = request(0);
    assert_string_equal(json_string_value(json_object_get(r, "method")), "POST");
    assert_string_equal(json_string_value(json_object_get(r, "path")), "/points/p42?from=e-1");
    assert_string_equal(json_string_value(json_object_get(r, "body")),
                        "{\"id\": \"p42\", \"was\": 120}");
    json_t *h = json_object_get(r, "headers");
    const char *k;
    json_t *v;
    int seen = 0;
    json_object_foreach(h, k, v)
    {
        const char *s = json_string_value(v);
        if (!strcasecmp(k, "Idempotency-Key"))
            seen |= 1 * !strcmp(s, "j:cart:7:points:4");
        if (!strcasecmp(k, "X-Tier"))
            seen |= 2 * !strcmp(s, "gold");
        if (!strcasecmp(k, "Authorization"))
            seen |= 4 * !strcmp(s, "Bearer s3cret");
        if (!strcasecmp(k, "Content-Type"))
            seen |= 8 * !strcmp(s, "application/json");
    }
    assert_int_equal(seen, 15);
    json_decref(r);
    buf_free(&resp);
    test_instance_free(inst);
}

static void test_outcomes(void **state)
{
    sink_start("--status", "503,429,408,400,404,200", NULL, NULL);
    char settings[512];
    snprintf(settings, sizeof settings, "url = \"http://127.0.0.1:%d/x\"; method = \"GET\";",
             sink.port);
    instance *inst = action(settings);
    buf resp;
    buf_init(&resp);
    char reason[512];
    assert_int_equal(call(inst, "a", &resp, reason, sizeof reason), BATON_RETRY);
    assert_non_null(strstr(reason, "HTTP 503"));
    assert_int_equal(call(inst, "a", &resp, reason, sizeof reason), BATON_RETRY);
    assert_int_equal(call(inst, "a", &resp, reason, sizeof reason), BATON_RETRY);
    assert_int_equal(call(inst, "a", &resp, reason, sizeof reason), BATON_ERROR);
    assert_non_null(strstr(reason, "HTTP 400"));
    assert_int_equal(call(inst, "a", &resp, reason, sizeof reason), BATON_ERROR);
    assert_int_equal(call(inst, "a", &resp, reason, sizeof reason), BATON_OK);
    json_t *r = request(0);
    assert_string_equal(json_string_value(json_object_get(r, "method")), "GET");
    json_decref(r);
    buf_free(&resp);
    test_instance_free(inst);
}

static void test_no_answer_is_retry(void **state)
{
    sink_start("--delay-ms", "1500", NULL, NULL);
    char settings[512];
    snprintf(settings, sizeof settings, "url = \"http://127.0.0.1:%d/slow\"; timeout = \"200ms\";",
             sink.port);
    instance *inst = action(settings);
    buf resp;
    buf_init(&resp);
    char reason[512];
    assert_int_equal(call(inst, "a", &resp, reason, sizeof reason), BATON_RETRY);
    test_instance_free(inst);
    snprintf(settings, sizeof settings, "url = \"http://127.0.0.1:%d/\"; timeout = \"1s\";",
             server_free_port());
    inst = action(settings);
    assert_int_equal(call(inst, "a", &resp, reason, sizeof reason), BATON_RETRY);
    buf_free(&resp);
    test_instance_free(inst);
}

static void test_bad_settings(void **state)
{
    char err[512];
    assert_null(test_instance_new(baton_plugin_entry(), "actions", "a",
                                  "url = \"http://x/{{ profile.id \";", 1, err, sizeof err));
    assert_non_null(strstr(err, "url:"));
    assert_null(test_instance_new(baton_plugin_entry(), "actions", "a",
                                  "url = \"http://x/\"; auth = \"bearer\";", 1, err, sizeof err));
    assert_non_null(strstr(err, "needs token"));
    assert_null(test_instance_new(baton_plugin_entry(), "actions", "a",
                                  "url = \"http://x/\"; headers = [ \"nocolon\" ];", 1, err,
                                  sizeof err));
    assert_non_null(strstr(err, "Name: value"));
}

/* Through the journey runner: the action's JSON answer read by the next
 * condition (<node>.<field>), a transient failure retried, a permanent
 * one following on_error. */
static const char *flow =
    "journey: { name = \"pts\"; entry = { event = \"go\"; };\n"
    "  start = \"points\"; nodes = (\n"
    "    { id = \"points\"; type = \"action\"; action = \"loyalty\"; next = \"c\"; on_error = "
    "\"err\"; },\n"
    "    { id = \"c\"; type = \"condition\"; branches = ( { when = \"points.balance > 100\"; next "
    "= \"big\"; } ); otherwise = \"small\"; },\n"
    "    { id = \"big\"; type = \"end\"; }, { id = \"small\"; type = \"end\"; }, { id = \"err\"; "
    "type = \"end\"; } ); };\n";

static char *path_of(store *st, const char *profile)
{
    sqlite3_stmt *q;
    char *out = NULL;
    sqlite3_prepare_v2(st->db,
                       "SELECT state || ': ' || path FROM journey_instances WHERE profile = ?", -1,
                       &q, NULL);
    sqlite3_bind_text(q, 1, profile, -1, SQLITE_STATIC);
    if (sqlite3_step(q) == SQLITE_ROW)
        out = strdup((const char *)sqlite3_column_text(q, 0));
    sqlite3_finalize(q);
    return out;
}

static void test_journey_action_results(void **state)
{
    /* p1: 200 with a balance; p2: 400 (permanent); p3: 503 once, then 200 */
    sink_start("--body", "{\"balance\": 170}", "--match", "p2=400");
    char settings[1024];
    snprintf(
        settings, sizeof settings,
        "url = \"http://127.0.0.1:%d/points\"; body = \"{\\\"id\\\": \\\"{{ profile.id }}\\\"}\";"
        " retries = 2;",
        sink.port);
    instance *inst = action(settings);
    app a;
    memset(&a, 0, sizeof a);
    a.inst = &inst;
    a.ninst = 1;
    store st;
    char err[512];
    assert_int_equal(store_open(&st, dir, err, sizeof err), 0);
    diag d;
    diag_init(&d);
    char *jpath = file_write(dir, "pts.cfg", flow);
    journey *j = journey_load(jpath, NULL, &d);
    assert_non_null(j);
    jrunner *r = jrunner_start(&a, &st, &j, 1, NULL, 0, NULL, err, sizeof err);
    assert_non_null(r);
    const char *evs[] = {"{\"id\": \"1\", \"type\": \"go\", \"profile\": \"p1\"}",
                         "{\"id\": \"2\", \"type\": \"go\", \"profile\": \"p2\"}"};
    for (int i = 0; i < 2; i++)
        assert_int_equal(jrunner_submit(r, NULL, evs[i], strlen(evs[i]), NULL, NULL), 0);
    char *p1 = NULL, *p2 = NULL;
    for (int i = 0; i < 300; i++) {
        free(p1);
        free(p2);
        p1 = path_of(&st, "p1");
        p2 = path_of(&st, "p2");
        if (p1 && p2 && strncmp(p1, "active", 6) && strncmp(p2, "active", 6))
            break;
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL);
    }
    assert_string_equal(p1, "completed: points c big");
    assert_string_equal(p2, "completed: points err");
    free(p1);
    free(p2);
    /* a 503 is retried (with backoff) and then succeeds */
    server_stop(&sink);
    memset(&sink, 0, sizeof sink);
    jrunner_stop(r);
    test_instance_free(inst);
    sink_start("--status", "503", "--body", "{\"balance\": 20}");
    snprintf(settings, sizeof settings, "url = \"http://127.0.0.1:%d/points\"; retries = 2;",
             sink.port);
    inst = action(settings);
    a.inst = &inst;
    r = jrunner_start(&a, &st, &j, 1, NULL, 0, NULL, err, sizeof err);
    const char *e3 = "{\"id\": \"3\", \"type\": \"go\", \"profile\": \"p3\"}";
    assert_int_equal(jrunner_submit(r, NULL, e3, strlen(e3), NULL, NULL), 0);
    char *p3 = NULL;
    for (int i = 0; i < 300; i++) {
        free(p3);
        p3 = path_of(&st, "p3");
        if (p3 && strncmp(p3, "active", 6))
            break;
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL);
    }
    assert_string_equal(p3, "completed: points c small");
    free(p3);
    jrunner_stop(r);
    test_instance_free(inst);
    journey_free(j);
    free(jpath);
    diag_free(&d);
    store_close(&st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_request_and_response, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outcomes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_answer_is_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_journey_action_results, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
