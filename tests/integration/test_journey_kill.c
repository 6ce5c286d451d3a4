/* kill -9 of `baton serve` while a journey's mail goes out (an SMTP
 * server that goes silent after 20 messages, two connections taking 5
 * messages at a time: one message on each connection's wire at the
 * kill, and any the channel marked on the wire ahead of them). Right
 * after the kill, `journey status` (per node, text and --json) and
 * `baton profile` (its steps and deliveries) count those uncertain; once
 * serve is back (the server answering again), the rest is sent, the
 * journey's send rows end with their final status, and /metrics (read by
 * a strict parser) counts the same uncertain among the email channel's
 * sends by outcome. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support/fs.h"
#include "support/server.h"

#define TOKEN "ops-secret-0123456789abcdef"
#define EVENTS 40

static char *dir, *cfg, *sinkdir, *db;
static test_server smtp;
static int port;
static pid_t serve = -1;

static char *sh(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *cmd;
    if (vasprintf(&cmd, fmt, ap) < 0)
        abort();
    va_end(ap);
    char *out = NULL;
    run_capture(cmd, &out, NULL);
    free(cmd);
    return out ? out : strdup("");
}

static json_t *baton_json(const char *args)
{
    char *out, *err;
    int rc = run_baton(dir, cfg, &out, &err, "%s --json", args);
    if (rc != 0)
        fail_msg("baton %s: %d: %s", args, rc, err);
    json_t *o = json_loads(out, 0, NULL);
    if (!o)
        fail_msg("baton %s: not JSON: %s", args, out);
    free(out);
    free(err);
    return o;
}

static json_t *get_json(const char *path)
{
    char *out =
        sh("curl -sf -H 'Authorization: Bearer " TOKEN "' http://127.0.0.1:%d%s", port, path);
    json_t *o = json_loads(out, 0, NULL);
    if (!o)
        fail_msg("GET %s: not JSON: %s", path, out);
    free(out);
    return o;
}

/* lines of the sink's log.jsonl holding s */
static int sink_lines(const char *s)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/log.jsonl", sinkdir);
    char *log = file_read(path, NULL);
    int n = 0;
    for (char *p = log; p && (p = strstr(p, s)); p++)
        n++;
    free(log);
    return n;
}

static int start_sink(const char *hold)
{
    char src[1024], ps[16];
    snprintf(src, sizeof src, "%s/tests/support/smtp_sink.py", getenv("BATON_SRC"));
    snprintf(ps, sizeof ps, "%d", smtp.port);
    char *argv[] = {"/usr/bin/python3",           src,          "--dir", sinkdir, "--port", ps,
                    hold ? "--hold-after" : NULL, (char *)hold, NULL};
    return server_start_ready(&smtp, argv, 15000);
}

static int start_serve(void)
{
    serve = fork();
    if (serve == 0) {
        char log[1024];
        snprintf(log, sizeof log, "%s/baton.log", dir);
        if (!freopen(log, "a", stdout) || !freopen(log, "a", stderr) || chdir(dir) != 0)
            _exit(127);
        execl(getenv("BATON_BIN"), "baton", "-c", cfg, "serve", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 1500; i++) {
        char *code = sh("curl -s -o /dev/null -w '%%{http_code}' http://127.0.0.1:%d/readyz", port);
        int ok = !strcmp(code, "200");
        free(code);
        if (ok)
            return 0;
        usleep(20000);
    }
    return -1;
}

static int setup(void **st)
{
    dir = tmpdir_make("journeykill");
    if (asprintf(&sinkdir, "%s/smtp", dir) < 0 || asprintf(&db, "%s/var/state.db", dir) < 0)
        abort();
    free(sh("mkdir -p %s/journeys %s", dir, sinkdir));
    smtp.port = server_free_port();
    if (start_sink("20") != 0)
        return -1;
    port = server_free_port();
    char *text;
    if (asprintf(&text,
                 "baton: { data_dir = \"var\"; plugin_path = [ \"%s\" ]; log = { level = "
                 "\"info\"; }; };\n"
                 "sources: { crm: { plugin = \"source_sqlite\"; path = \"var/crm.db\"; schema = "
                 "\"%s/conf/schema.cfg\"; }; };\n"
                 "profiles = \"crm\";\n"
                 "channels: { email: { plugin = \"channel_email\"; port = %d; from = \"Shop "
                 "<news@example.com>\"; address = \"email\"; connections = 2;\n"
                 "  batch = 5; }; };\n"
                 "journeys = [ \"journeys\" ];\n"
                 "http = { listen = \"127.0.0.1:%d\"; tokens = ( { name = \"ops\"; secret = \""
                 "" TOKEN "\"; scopes = [ \"read\", \"events:write\" ]; } ); };\n",
                 getenv("BATON_PLUGINS"), getenv("BATON_SRC"), smtp.port, port) < 0)
        abort();
    cfg = file_write(dir, "baton.cfg", text);
    free(text);
    free(file_write(dir, "journeys/thanks.cfg",
                    "journey: { name = \"thanks\"; entry = { event = \"order\"; };\n"
                    "  start = \"mail\"; nodes = (\n"
                    "    { id = \"mail\"; type = \"send\"; channel = \"email\"; subject = \"Thanks "
                    "{{ profile.first_name }}\"; text = \"Your order\"; next = \"done\"; },\n"
                    "    { id = \"done\"; type = \"end\"; } ); };\n"));
    char *out, *err;
    int rc = run_baton(dir, cfg, &out, &err, "sample-data --profiles %d --seed 3", EVENTS);
    free(out);
    free(err);
    return rc ? -1 : start_serve();
}

static int teardown(void **st)
{
    server_stop(&smtp); /* first: a message it holds would hold serve's stop */
    if (serve > 0) {
        kill(serve, SIGTERM);
        waitpid(serve, NULL, 0);
    }
    if (!getenv("BATON_KEEP_TMP"))
        tmpdir_remove(dir);
    free(dir);
    free(cfg);
    free(sinkdir);
    free(db);
    return 0;
}

static long long node_count(json_t *status, const char *key)
{
    return json_integer_value(
        json_object_get(json_object_get(json_object_get(status, "nodes"), "mail"), key));
}

/* The status of profile pid's one journey step and of its one delivery
 * (baton profile --json or GET /v1/profiles/ID). */
static void profile_statuses(json_t *p, const char **step, const char **delivery)
{
    assert_int_equal(json_array_size(json_object_get(p, "sent")), 1);
    assert_int_equal(json_array_size(json_object_get(p, "deliveries")), 1);
    *step =
        json_string_value(json_object_get(json_array_get(json_object_get(p, "sent"), 0), "status"));
    *delivery = json_string_value(
        json_object_get(json_array_get(json_object_get(p, "deliveries"), 0), "status"));
}

static void test_kill_mid_journey(void **st)
{
    /* an order from every profile: a mail each, those with consent */
    json_t *evs = json_array();
    for (int i = 1; i <= EVENTS; i++)
        json_array_append_new(evs, json_pack("{s:o, s:s, s:o}", "id", json_sprintf("o-%d", i),
                                             "type", "order", "profile", json_sprintf("p%d", i)));
    char *body = json_dumps(evs, JSON_COMPACT);
    json_decref(evs);
    free(file_write(dir, "events.json", body));
    free(body);
    char *ans = sh("curl -sf -H 'Authorization: Bearer " TOKEN "' -H 'Content-Type: "
                   "application/json' --data-binary @%s/events.json http://127.0.0.1:%d/v1/events",
                   dir, port);
    if (!strstr(ans, "\"accepted\": 40") && !strstr(ans, "\"accepted\":40"))
        fail_msg("POST /v1/events: %s", ans);
    free(ans);
    assert_int_equal(db_wait_for(db,
                                 "SELECT count(*) FROM journey_instances WHERE state = 'completed'",
                                 EVENTS, 10000),
                     EVENTS);
    long eligible =
        db_long(db, "SELECT count(*) FROM journey_sends WHERE status NOT LIKE 'skipped%'");
    assert_true(eligible > 22);

    /* 20 stored, one held on each connection's wire: kill -9 */
    for (int i = 0; i < 3000 && (sink_lines("\"rcpt_tos\"") < 20 || sink_lines("\"held\"") < 2);
         i++)
        usleep(10000);
    assert_int_equal(sink_lines("\"held\""), 2);
    kill(serve, SIGKILL);
    waitpid(serve, NULL, 0);
    serve = -1;

    /* at once: the node counts them uncertain, text and JSON: the two
     * held, one per connection (wire_ahead = 1, the default, marks no
     * message on the wire before its own text goes) */
    json_t *s = baton_json("journey status thanks");
    long long unsure = node_count(s, "uncertain"), sent_before = node_count(s, "sent");
    assert_int_equal(unsure, 2);
    assert_int_equal(sent_before + unsure + node_count(s, "pending"), eligible);
    json_decref(s);
    char *out, *err;
    assert_int_equal(run_baton(dir, cfg, &out, &err, "journey status thanks"), 0);
    char want[64];
    snprintf(want, sizeof want, "sent %lld, uncertain %lld", sent_before, unsure);
    if (!strstr(out, want))
        fail_msg("journey status: no '%s' in %s", want, out);
    free(out);
    free(err);
    /* and so does the profile of a held message, its step and its delivery */
    char *held = sh("sqlite3 %s \"SELECT profile_id FROM deliveries WHERE recipient = '$(grep -m1 "
                    "held %s/log.jsonl | sed 's/.*\\[\"//; s/\".*//')'\"",
                    db, sinkdir);
    held[strcspn(held, "\n")] = '\0';
    assert_true(held[0] == 'p');
    char args[128];
    snprintf(args, sizeof args, "profile %s", held);
    json_t *p = baton_json(args);
    const char *step, *delivery;
    profile_statuses(p, &step, &delivery);
    assert_string_equal(step, "uncertain");
    assert_string_equal(delivery, "uncertain");
    json_decref(p);

    /* serve again, the server answering: the rest goes, the two do not */
    server_stop(&smtp);
    assert_int_equal(start_sink(NULL), 0);
    assert_int_equal(start_serve(), 0);
    assert_int_equal(db_wait_for(db,
                                 "SELECT count(*) FROM deliveries WHERE status IN ('queued', "
                                 "'retry', 'deferred')",
                                 0, 30000),
                     0);
    /* the journey's send rows hold their final status */
    assert_int_equal(
        db_wait_for(db, "SELECT count(*) FROM journey_send_outcomes WHERE status = 'uncertain'",
                    unsure, 5000),
        unsure);
    assert_int_equal(
        db_long(db, "SELECT count(*) FROM journey_send_outcomes WHERE status = 'sent'"),
        eligible - unsure);
    s = get_json("/v1/journeys/thanks");
    assert_int_equal(node_count(s, "uncertain"), unsure);
    assert_int_equal(node_count(s, "sent"), eligible - unsure);
    assert_int_equal(node_count(s, "pending"), 0);
    json_decref(s);
    char path[160];
    snprintf(path, sizeof path, "/v1/profiles/%s", held);
    p = get_json(path);
    profile_statuses(p, &step, &delivery);
    assert_string_equal(step, "uncertain");
    assert_string_equal(delivery, "uncertain");
    json_decref(p);
    free(held);
    /* /metrics, read strictly: the email channel's sends by outcome */
    char *raw = sh("curl -s -H 'Authorization: Bearer " TOKEN "' http://127.0.0.1:%d/metrics > "
                   "%s/metrics.txt && /usr/bin/python3 %s/tests/support/prom_check.py < "
                   "%s/metrics.txt",
                   port, dir, getenv("BATON_SRC"), dir);
    json_t *fams = json_loads(raw, 0, NULL);
    if (!fams)
        fail_msg("prom_check: %s", raw);
    free(raw);
    double unsure_m = -1, sent = -1;
    size_t i;
    json_t *smp;
    json_array_foreach(json_object_get(json_object_get(fams, "baton_sends_total"), "samples"), i,
                       smp)
    {
        json_t *l = json_array_get(smp, 1);
        const char *ch = json_string_value(json_object_get(l, "channel"));
        const char *o = json_string_value(json_object_get(l, "outcome"));
        if (!ch || strcmp(ch, "email") || !o)
            continue;
        if (!strcmp(o, "uncertain"))
            unsure_m = json_number_value(json_array_get(smp, 2));
        if (!strcmp(o, "sent"))
            sent = json_number_value(json_array_get(smp, 2));
    }
    json_decref(fams);
    assert_true(unsure_m == unsure);                      /* recorded by the serve back */
    assert_true(sent == eligible - sent_before - unsure); /* what it sent itself */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_kill_mid_journey, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
