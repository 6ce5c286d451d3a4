/* The live journey runner: events committed to the inbox before they are
 * acknowledged, duplicates and malformed events, sends handed to the
 * channel dispatcher once with their idempotency key, timers on a clock
 * the test moves, and a stop/start that re-sends nothing and loses
 * nothing. Uses the in-process fake channel. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "delivery/dispatch.h"
#include "journey/engine.h"
#include "journey/event.h"
#include "journey/journey.h"
#include "journey/report.h"
#include "journey/runner.h"
#include "journey/runner_impl.h"
#include "support/fake_channel.h"
#include "support/fs.h"

static char *dir;
static store st;
static app a;
static _Atomic int64_t clock_now = 1795428000000LL; /* 2026-11-23T10:00:00Z */
static _Atomic int acks;

static int64_t test_clock(void)
{
    return clock_now;
}
static void on_ack(void *ud)
{
    acks++;
}

static int setup(void **state)
{
    dir = tmpdir_make("jrunner");
    char err[256];
    assert_int_equal(store_open(&st, dir, err, sizeof err), 0);
    memset(&a, 0, sizeof a);
    fake_channel_reset();
    acks = 0;
    return 0;
}

static int teardown(void **state)
{
    store_close(&st);
    tmpdir_remove(dir);
    free(dir);
    return 0;
}

static const char *flow =
    "journey: { name = \"flow\";\n"
    "  entry = { event = \"cart\"; reentry = \"always\"; };\n"
    "  exit = ( { event = \"unsubscribed\"; } );\n"
    "  start = \"w\";\n"
    "  nodes = (\n"
    "    { id = \"w\"; type = \"wait\"; duration = \"1h\"; next = \"mail\"; },\n"
    "    { id = \"mail\"; type = \"send\"; channel = \"email\"; subject = \"Hi\"; text = \"Your "
    "cart\"; next = \"react\"; },\n"
    "    { id = \"react\"; type = \"wait_event\"; event = \"order\"; timeout = \"1d\"; on_event = "
    "\"done\"; on_timeout = \"sms\"; },\n"
    "    { id = \"sms\"; type = \"send\"; channel = \"sms\"; text = \"Still there?\"; next = "
    "\"done\"; },\n"
    "    { id = \"done\"; type = \"end\"; }\n"
    "  ); };\n";

typedef struct rig {
    journey *j;
    instance *email;
    dispatcher *d;
    jrunner *r;
} rig;

static const char *flow_text;

static void rig_up_with(rig *g, const char *email_cfg)
{
    char err[512];
    diag dg;
    diag_init(&dg);
    char *path = file_write(dir, "flow.cfg", flow_text ? flow_text : flow);
    g->j = journey_load(path, NULL, &dg);
    free(path);
    assert_non_null(g->j);
    g->email = fake_channel_new("email", email_cfg, err, sizeof err);
    assert_non_null(g->email);
    g->d = dispatch_open(g->email, &st, &(dispatch_opts){0}, err, sizeof err);
    if (!g->d)
        fail_msg("dispatcher: %s", err);
    /* sms is configured but turned off: no instance, no dispatcher */
    jchannel ch[] = {{"email", g->email, g->d}, {"sms", NULL, NULL}};
    jrunner_opts o = {.clock_ms = test_clock, .queue = 1000};
    g->r = jrunner_start(&a, &st, &g->j, 1, ch, 2, &o, err, sizeof err);
    if (!g->r)
        fail_msg("runner: %s", err);
    diag_free(&dg);
}

static void rig_up(rig *g)
{
    rig_up_with(g, "connections = 1; retry_backoff = \"10ms\";");
}

static void rig_down(rig *g)
{
    jrunner_stop(g->r);
    dispatch_close(g->d, 1, 5000);
    fake_channel_free(g->email);
    journey_free(g->j);
}

static int submit(rig *g, const char *id, const char *type, const char *profile)
{
    char json[256];
    snprintf(json, sizeof json, "{\"id\": \"%s\", \"type\": \"%s\", \"profile\": \"%s\"}", id, type,
             profile);
    return jrunner_submit(g->r, NULL, json, strlen(json), on_ack, NULL);
}

/* n cart events: ids <id>0.., profiles <profile>0.. */
static void submit_carts(rig *g, const char *id, const char *profile, int n)
{
    for (int i = 0; i < n; i++) {
        char e[32], p[32];
        snprintf(e, sizeof e, "%s%d", id, i);
        snprintf(p, sizeof p, "%s%d", profile, i);
        assert_int_equal(submit(g, e, "cart", p), 0);
    }
}

static int count(const char *sql)
{
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(st.db, sql, -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    int n = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    return n;
}

static void settle(rig *g)
{
    assert_int_equal(jrunner_drain(g->r, 5000), 0);
    assert_int_equal(dispatch_flush(g->d, 5000), 0);
    assert_int_equal(jrunner_drain(g->r, 5000), 0);
}

static void wait_until(const char *sql, int want)
{
    for (int i = 0; i < 500 && count(sql) != want; i++) {
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(count(sql), want);
}

static void test_flow(void **state)
{
    rig g;
    rig_up(&g);
    assert_int_equal(submit(&g, "e1", "cart", "p1"), 0);
    assert_int_equal(submit(&g, "e2", "cart", "p2"), 0);
    assert_int_equal(submit(&g, "e3", "cart", "p3"), 0);
    assert_int_equal(submit(&g, "e1", "cart", "p1"), 0); /* duplicate */
    assert_int_equal(jrunner_submit(g.r, NULL, "{nope", 5, on_ack, NULL), 0);
    settle(&g);
    assert_int_equal(acks, 5); /* every one acknowledged once durable */
    jrunner_stats s;
    jrunner_get_stats(g.r, &s);
    assert_int_equal(s.accepted, 3);
    assert_int_equal(s.duplicates, 1);
    assert_int_equal(s.dead_letters, 1);
    wait_until("SELECT count(*) FROM journey_instances WHERE node = 'w' AND state = 'active'", 3);
    assert_int_equal(fake_channel_total(), 0);

    /* an hour later every profile is sent its mail, once */
    clock_now += 3600 * 1000;
    wait_until("SELECT count(*) FROM journey_instances WHERE node = 'react'", 3);
    settle(&g);
    /* each send's row ends with its message's status */
    wait_until("SELECT count(*) FROM journey_send_outcomes WHERE status = 'sent'", 3);
    assert_int_equal(fake_channel_total(), 3);
    assert_int_equal(fake_channel_sent("j:flow:1:mail:2"), 1);

    /* p1 orders, p2 leaves; p3 times out onto sms, which is turned off */
    assert_int_equal(submit(&g, "e4", "order", "p1"), 0);
    assert_int_equal(submit(&g, "e5", "unsubscribed", "p2"), 0);
    settle(&g);
    clock_now += 86400 * 1000;
    wait_until("SELECT count(*) FROM journey_instances WHERE state = 'completed'", 2);
    wait_until("SELECT count(*) FROM journey_instances WHERE state = 'exited'", 1);
    wait_until("SELECT count(*) FROM journey_sends WHERE status = 'skipped: channel disabled'", 1);
    assert_int_equal(fake_channel_total(), 3);
    rig_down(&g);
}

/* A send's outcome is the delivery log's row, read through the view
 * journey_send_outcomes; a store that had the version 2 trigger (a copy
 * of it in journey_sends, one more write a message) loses it on open. */
static void test_outcomes_from_the_log(void **state)
{
    /* an older store: the trigger on deliveries, at version 2 */
    rig g;
    rig_up(&g);
    rig_down(&g);
    assert_int_equal(sqlite3_exec(st.db,
                                  "CREATE TRIGGER journey_sends_outcome AFTER UPDATE OF status ON"
                                  " deliveries BEGIN UPDATE journey_sends SET status ="
                                  " new.status WHERE key = new.key; END;"
                                  "UPDATE store_schema SET version = 2"
                                  " WHERE module = 'journey_sends_outcome'",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    rig_up(&g);
    assert_int_equal(
        count("SELECT count(*) FROM sqlite_master WHERE name = 'journey_sends_outcome'"), 0);
    submit_carts(&g, "o", "q", 2);
    settle(&g);
    clock_now += 3600 * 1000;
    wait_until("SELECT count(*) FROM journey_instances WHERE node = 'react'", 2);
    settle(&g);
    wait_until("SELECT count(*) FROM journey_send_outcomes WHERE status = 'sent'", 2);
    /* the step's own record stays as it was handed */
    assert_int_equal(count("SELECT count(*) FROM journey_sends WHERE status = 'queued'"), 2);
    /* a failure reads with its reason, a bounce as the log says */
    assert_int_equal(
        sqlite3_exec(st.db,
                     "UPDATE deliveries SET status = 'failed', reason = '550 5.1.1"
                     " no such user' WHERE profile_id = 'q0';"
                     "UPDATE deliveries SET status = 'bounced' WHERE profile_id = 'q1'",
                     NULL, NULL, NULL),
        SQLITE_OK);
    assert_int_equal(count("SELECT count(*) FROM journey_send_outcomes WHERE profile = 'q0' AND"
                           " status = 'failed: 550 5.1.1 no such user'"),
                     1);
    assert_int_equal(count("SELECT count(*) FROM journey_send_outcomes WHERE profile = 'q1' AND"
                           " status = 'bounced'"),
                     1);
    rig_down(&g);
}

static void test_restart_sends_nothing_twice(void **state)
{
    rig g;
    rig_up(&g);
    submit_carts(&g, "r", "p", 50);
    settle(&g);
    clock_now += 3600 * 1000;
    wait_until("SELECT count(*) FROM journey_instances WHERE node = 'react'", 50);
    settle(&g);
    rig_down(&g);
    unsigned long sent = fake_channel_total();
    assert_int_equal(sent, 50);
    /* a second run over the same store: the same events again (a source
     * redelivering) change nothing, and nothing is sent again */
    rig_up(&g);
    submit_carts(&g, "r", "p", 50);
    settle(&g);
    jrunner_stats s;
    jrunner_get_stats(g.r, &s);
    assert_int_equal(s.duplicates, 50);
    assert_int_equal(fake_channel_total(), 50);
    assert_int_equal(count("SELECT count(*) FROM journey_instances"), 50);
    rig_down(&g);
}

static void test_pending_send_is_handed_on_start(void **state)
{
    /* a send recorded pending by a run that died before handing it on */
    rig g;
    rig_up(&g);
    assert_int_equal(submit(&g, "x1", "cart", "px"), 0);
    settle(&g);
    rig_down(&g);
    assert_int_equal(sqlite3_exec(st.db,
                                  "UPDATE journey_instances SET node = 'react', wait = 'event',"
                                  " due = NULL, path = 'w mail react';"
                                  "INSERT INTO journey_sends(key, instance, journey, profile, node,"
                                  " kind, target, status, at, step) VALUES ('j:flow:1:mail:2', 1,"
                                  " 'flow', 'px', 'mail', 'send', 'email', 'pending', 0, 2)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    rig_up(&g);
    settle(&g);
    assert_int_equal(dispatch_flush(g.d, 5000), 0);
    wait_until("SELECT count(*) FROM journey_send_outcomes WHERE status = 'sent'", 1);
    assert_int_equal(fake_channel_sent("j:flow:1:mail:2"), 1);
    rig_down(&g);
    /* and once more: the log has it, the dispatcher refuses the duplicate */
    assert_int_equal(
        sqlite3_exec(st.db, "UPDATE journey_sends SET status = 'pending'", NULL, NULL, NULL),
        SQLITE_OK);
    rig_up(&g);
    settle(&g);
    wait_until("SELECT count(*) FROM journey_send_outcomes WHERE status = 'sent'",
               1); /* the log's */
    assert_int_equal(dispatch_flush(g.d, 5000), 0);
    assert_int_equal(fake_channel_sent("j:flow:1:mail:2"), 1);
    rig_down(&g);
}

/* Sends are handed to their dispatcher inside the engine's transaction;
 * the ones a full dispatcher refuses are recorded pending, handed after
 * the commit, and marked then: each is sent once and ends sent. */
static void test_full_dispatcher_keeps_sends_for_later(void **state)
{
    rig g;
    rig_up_with(&g, "connections = 1; queue = 3; batch = 2;");
    submit_carts(&g, "f", "pf", 40);
    settle(&g);
    clock_now += 3600 * 1000; /* the 40 waits end together: one batch of 40 sends */
    assert_int_equal(dispatch_flush(g.d, 5000), 0);
    wait_until("SELECT count(*) FROM journey_send_outcomes WHERE status = 'sent'", 40);
    assert_int_equal(fake_channel_total(), 40);
    for (int i = 0; i < 40; i++) {
        char key[64];
        snprintf(key, sizeof key, "j:flow:%d:mail:2", i + 1);
        assert_int_equal(fake_channel_sent(key), 1);
    }
    assert_int_equal(count("SELECT count(*) FROM deliveries WHERE status = 'sent'"), 40);
    rig_down(&g);
}

/* The engine's timer heap holds the waiting instances only: one that
 * reacts, exits or is replaced gives its timeout back at once. */
static void test_timers_follow_instances(void **state)
{
    char *path = file_write(
        dir, "t.cfg",
        "journey: { name = \"t\"; entry = { event = \"cart\"; reentry = \"always\"; };\n"
        "  exit = ( { event = \"unsubscribed\"; } ); start = \"r\";\n"
        "  nodes = ( { id = \"r\"; type = \"wait_event\"; event = \"order\"; timeout = \"1h\";"
        " on_event = \"e\"; on_timeout = \"e\"; }, { id = \"e\"; type = \"end\"; } ); };\n");
    diag d;
    diag_init(&d);
    journey *j = journey_load(path, NULL, &d);
    free(path);
    assert_non_null(j);
    jengine e;
    char err[256];
    assert_int_equal(jengine_open(&e, &st, &j, 1, &(jengine_ops){0}, err, sizeof err), 0);
    int64_t now = clock_now;
    char json[256];
    int id = 0;
    assert_int_equal(jengine_begin(&e, err, sizeof err), 0);
    for (int i = 0; i < 100; i++) {
        const char *type = "cart";
        int len =
            snprintf(json, sizeof json, "{\"id\": \"%d\", \"type\": \"%s\", \"profile\": \"p%d\"}",
                     id++, type, i);
        jevent ev;
        char why[128];
        assert_int_equal(jevent_parse(json, (size_t)len, now, &ev, why, sizeof why), 0);
        assert_int_equal(jengine_event(&e, &ev, now, err, sizeof err), 0);
        jevent_free(&ev);
    }
    assert_int_equal(jengine_commit(&e, err, sizeof err), 0);
    assert_int_equal(e.timers.n, 100);
    /* 50 react, 10 exit */
    assert_int_equal(jengine_begin(&e, err, sizeof err), 0);
    for (int i = 0; i < 60; i++) {
        int len =
            snprintf(json, sizeof json, "{\"id\": \"%d\", \"type\": \"%s\", \"profile\": \"p%d\"}",
                     id++, i < 50 ? "order" : "unsubscribed", i);
        jevent ev;
        char why[128];
        assert_int_equal(jevent_parse(json, (size_t)len, now + 1000, &ev, why, sizeof why), 0);
        assert_int_equal(jengine_event(&e, &ev, now + 1000, err, sizeof err), 0);
        jevent_free(&ev);
    }
    assert_int_equal(jengine_commit(&e, err, sizeof err), 0);
    assert_int_equal(e.timers.n, 40);
    /* a rolled-back batch leaves the heap as the store has it */
    assert_int_equal(jengine_begin(&e, err, sizeof err), 0);
    int len =
        snprintf(json, sizeof json, "{\"id\": \"x\", \"type\": \"order\", \"profile\": \"p70\"}");
    jevent ev;
    char why[128];
    assert_int_equal(jevent_parse(json, (size_t)len, now + 2000, &ev, why, sizeof why), 0);
    assert_int_equal(jengine_event(&e, &ev, now + 2000, err, sizeof err), 0);
    jevent_free(&ev);
    assert_int_equal(e.timers.n, 39);
    jengine_rollback(&e);
    assert_int_equal(e.timers.n, 40);
    /* the rest time out together, an hour later */
    size_t fired = 0;
    assert_int_equal(jengine_begin(&e, err, sizeof err), 0);
    assert_int_equal(jengine_fire(&e, now + 3600 * 1000 + 5000, 1000, &fired, err, sizeof err), 0);
    assert_int_equal(jengine_commit(&e, err, sizeof err), 0);
    assert_int_equal(fired, 40);
    assert_int_equal(e.timers.n, 0);
    jengine_close(&e);
    journey_free(j);
    diag_free(&d);
}

static void set_control(const char *state)
{
    char err[256];
    assert_int_equal(jengine_control_set(&st, "flow", state, clock_now, err, sizeof err), 0);
}

static void nap_ms(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Paused: entries wait in journey_held and no wait fires; resumed: the
 * held entry enters and the overdue wait fires. Closed: no new entries,
 * the instances inside go on. */
static void test_pause_resume_close(void **state)
{
    rig g;
    rig_up(&g);
    assert_int_equal(submit(&g, "a0", "cart", "p0"), 0);
    settle(&g);
    wait_until("SELECT count(*) FROM journey_instances WHERE node = 'w'", 1);
    set_control("paused");
    nap_ms(1200); /* the engine reads the control at least every second */
    assert_int_equal(submit(&g, "a1", "cart", "p1"), 0);
    settle(&g);
    wait_until("SELECT count(*) FROM journey_held", 1);
    assert_int_equal(count("SELECT count(*) FROM journey_instances WHERE profile = 'p1'"), 0);
    clock_now += 3600 * 1000; /* p0's wait is due, but frozen */
    nap_ms(1200);
    assert_int_equal(count("SELECT count(*) FROM journey_instances WHERE node = 'w'"), 1);
    assert_int_equal(fake_channel_total(), 0);

    set_control("running");
    wait_until("SELECT count(*) FROM journey_held", 0);
    wait_until("SELECT count(*) FROM journey_instances WHERE profile = 'p1' AND node = 'w'", 1);
    wait_until("SELECT count(*) FROM journey_instances WHERE profile = 'p0' AND node = 'react'", 1);

    set_control("closed");
    nap_ms(1200);
    assert_int_equal(submit(&g, "a2", "cart", "p2"), 0);
    settle(&g);
    nap_ms(1200);
    assert_int_equal(count("SELECT count(*) FROM journey_instances WHERE profile = 'p2'"), 0);
    assert_int_equal(count("SELECT count(*) FROM journey_held"), 0);
    clock_now += 3600 * 1000; /* p1, inside, goes on */
    wait_until("SELECT count(*) FROM journey_instances WHERE profile = 'p1' AND node = 'react'", 1);
    char err[64];
    store st2;
    assert_int_equal(store_open(&st2, dir, err, sizeof err), 0);
    assert_string_equal(jengine_control_get(&st2, "flow"), "closed");
    store_close(&st2);
    rig_down(&g);
}

static void route(jengine *e, const char *id, const char *type, const char *profile, int64_t now)
{
    char json[256], err[256], why[128];
    int len = snprintf(json, sizeof json,
                       "{\"id\": \"%s\", \"type\": \"%s\", \"profile\": \"%s\", \"data\": "
                       "{\"total\": 7}}",
                       id, type, profile);
    jevent ev;
    assert_int_equal(jevent_parse(json, (size_t)len, now, &ev, why, sizeof why), 0);
    assert_int_equal(jengine_begin(e, err, sizeof err), 0);
    assert_int_equal(jengine_event(e, &ev, now, err, sizeof err), 0);
    assert_int_equal(jengine_commit(e, err, sizeof err), 0);
    jevent_free(&ev);
}

/* A jump ends the instance and enters the other journey with the entry
 * event (its filter and reentry rule apply); check refuses a jump to no
 * journey. */
static void test_jump(void **state)
{
    char *pa = file_write(dir, "a.cfg",
                          "journey: { name = \"a\"; entry = { event = \"cart\"; reentry = "
                          "\"always\"; }; start = \"go\";\n"
                          "  nodes = ( { id = \"go\"; type = \"jump\"; journey = \"b\"; } ); };\n");
    char *pb =
        file_write(dir, "b.cfg",
                   "journey: { name = \"b\"; entry = { event = \"signup\"; filter = \"event.total "
                   "== 7\"; }; start = \"w\";\n"
                   "  nodes = ( { id = \"w\"; type = \"wait\"; duration = \"1h\"; next = \"e\"; },"
                   " { id = \"e\"; type = \"end\"; } ); };\n");
    char *pc =
        file_write(dir, "c.cfg",
                   "journey: { name = \"c\"; entry = { event = \"x\"; }; start = \"go\";\n"
                   "  nodes = ( { id = \"go\"; type = \"jump\"; journey = \"bb\"; } ); };\n");
    diag d;
    diag_init(&d);
    char *paths[] = {pa, pb};
    size_t n;
    journey **js = journey_load_all(paths, 2, NULL, &d, &n);
    assert_int_equal(d.errors, 0);
    assert_int_equal(n, 2);
    jengine e;
    char err[256];
    assert_int_equal(jengine_open(&e, &st, js, n, &(jengine_ops){0}, err, sizeof err), 0);
    route(&e, "1", "cart", "p1", clock_now);
    assert_int_equal(count("SELECT count(*) FROM journey_instances WHERE journey = 'a' AND state = "
                           "'completed' AND reason = 'jumped to journey ''b'''"),
                     1);
    assert_int_equal(count("SELECT count(*) FROM journey_instances WHERE journey = 'b' AND state = "
                           "'active' AND node = 'w' AND json_extract(event, '$.type') = 'cart'"),
                     1);
    /* a enters again; b (reentry never, still active) does not */
    route(&e, "2", "cart", "p1", clock_now + 1000);
    assert_int_equal(count("SELECT count(*) FROM journey_instances WHERE journey = 'a'"), 2);
    assert_int_equal(count("SELECT count(*) FROM journey_instances WHERE journey = 'b'"), 1);
    jengine_close(&e);
    journey_free_all(js, n);
    char *bad[] = {pa, pb, pc};
    js = journey_load_all(bad, 3, NULL, &d, &n);
    assert_true(d.errors > 0);
    int found = 0;
    for (size_t i = 0; i < d.n; i++)
        found |= strstr(d.v[i].msg, "journey = \"bb\" names no journey of this configuration "
                                    "(did you mean 'b'?)") != NULL;
    assert_true(found);
    journey_free_all(js, n);
    diag_free(&d);
    free(pa);
    free(pb);
    free(pc);
}

/* A changed file is a new version: the instance that entered version 1
 * finishes on it (its nodes, its path) while a new entry takes version 2;
 * status counts each. */
static void test_versions(void **state)
{
    rig g;
    flow_text = NULL;
    rig_up(&g);
    assert_int_equal(submit(&g, "v1", "cart", "p1"), 0);
    settle(&g);
    wait_until("SELECT count(*) FROM journey_instances WHERE version = 1 AND node = 'w'", 1);
    rig_down(&g);
    /* version 2: after the wait, a different send node */
    char *v2 = strdup(flow);
    char *at = strstr(v2, "next = \"mail\"; },");
    assert_non_null(at);
    memcpy(at, "next = \"sms\";  },", strlen("next = \"sms\";  },"));
    flow_text = v2;
    rig_up(&g);
    assert_int_equal(g.j->version, 2);
    assert_int_equal(submit(&g, "v2", "cart", "p2"), 0);
    settle(&g);
    wait_until("SELECT count(*) FROM journey_instances WHERE version = 2 AND node = 'w'", 1);
    clock_now += 3600 * 1000;
    wait_until("SELECT count(*) FROM journey_instances WHERE profile = 'p1' AND path = 'w mail "
               "react'",
               1);
    wait_until("SELECT count(*) FROM journey_instances WHERE profile = 'p2' AND path = 'w sms "
               "done' AND state = 'completed'",
               1);
    assert_int_equal(count("SELECT count(*) FROM journey_versions WHERE journey = 'flow'"), 2);
    json_t *o = jreport_status(&st, g.j);
    assert_int_equal(json_integer_value(json_object_get(o, "version")), 2);
    json_t *vs = json_object_get(o, "versions");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(vs, "1"), "active")), 1);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(vs, "2"), "completed")), 1);
    json_decref(o);
    rig_down(&g);
    /* the same text again is the same version */
    rig_up(&g);
    assert_int_equal(g.j->version, 2);
    rig_down(&g);
    flow_text = NULL;
    free(v2);
}

/* A submit that looked at "stopping" just before a stop began: the stop
 * then told the ingest thread to end, which found its queue empty and
 * exited. What the submit queues after that is never committed, nor
 * acknowledged (its waiter, an HTTP request or a source, waited for
 * ever). The state that submit meets is made here: the ingest thread
 * told to stop and gone, stopping not seen. It must refuse (-1), every
 * path, and nothing it was handed stays queued. */
static _Atomic int outcomes;
static void on_outcome(void *ctx, jrunner_outcome o, const char *id, const char *reason)
{
    outcomes++;
}

static void test_submit_after_the_ingest_thread_exited(void **state)
{
    rig g;
    rig_up(&g);
    assert_int_equal(submit(&g, "before", "cart", "p1"), 0);
    settle(&g);
    assert_int_equal(acks, 1);
    jrunner *r = g.r;
    pthread_mutex_lock(&r->imu);
    r->istop = 1;
    pthread_cond_signal(&r->icv);
    while (!r->iexited) {
        pthread_mutex_unlock(&r->imu);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&r->imu);
    }
    pthread_mutex_unlock(&r->imu);
    assert_int_equal(submit(&g, "late1", "cart", "p2"), -1);
    const char *json = "{\"id\": \"late2\", \"type\": \"cart\", \"profile\": \"p3\"}";
    assert_int_equal(jrunner_submit_outcome(r, "http", json, strlen(json), on_outcome, NULL), -1);
    jevent ev;
    char reason[256];
    assert_int_equal(jevent_parse(json, strlen(json), 0, &ev, reason, sizeof reason), 0);
    void *ctx[] = {NULL};
    size_t taken = 7;
    assert_int_equal(jrunner_submit_events(r, "http", &ev, NULL, 1, on_outcome, ctx, &taken), -1);
    assert_int_equal(taken, 0);
    jevent_free(&ev); /* still ours */
    pthread_mutex_lock(&r->imu);
    int queued = r->ihead != NULL;
    pthread_mutex_unlock(&r->imu);
    assert_false(queued);
    rig_down(&g);
    assert_int_equal(acks, 1);
    assert_int_equal(outcomes, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_flow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timers_follow_instances, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_resume_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jump, setup, teardown),
        cmocka_unit_test_setup_teardown(test_versions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outcomes_from_the_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_sends_nothing_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pending_send_is_handed_on_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_dispatcher_keeps_sends_for_later, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_submit_after_the_ingest_thread_exited, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
