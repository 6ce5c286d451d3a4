/* The journey engine: event envelopes, journey files and their errors,
 * the timer heap, and every node type, reentry and exit rule run through
 * the simulated clock of `journey test`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/app.h"
#include "base/timefmt.h"
#include "journey/event.h"
#include "journey/inbox.h"
#include "journey/journey.h"
#include "journey/report.h"
#include "journey/sim.h"
#include "journey/timers.h"
#include "support/fs.h"

static char *dir;

static int setup(void **st)
{
    dir = tmpdir_make("journey");
    return 0;
}

static int teardown(void **st)
{
    tmpdir_remove(dir);
    free(dir);
    return 0;
}

/* ---- events ------------------------------------------------------- */

static void test_event_ok(void **st)
{
    const char *j = "{\"id\": \"e-1001\", \"type\": \"cart_updated\", \"profile\": \"p42\","
                    " \"time\": \"2026-11-23T10:00:00Z\", \"data\": {\"total\": 59.9,"
                    " \"items\": 2, \"cart\": {\"lines\": 3}}}";
    jevent ev;
    char why[256];
    assert_int_equal(jevent_parse(j, strlen(j), 5, &ev, why, sizeof why), 0);
    assert_string_equal(ev.id, "e-1001");
    assert_string_equal(ev.type, "cart_updated");
    assert_string_equal(ev.profile, "p42");
    assert_int_equal(ev.time_ms, 1795428000000LL);
    json_t *v = jevent_field(&ev, "total");
    assert_true(json_is_real(v) && json_real_value(v) > 59.8);
    json_decref(v);
    v = jevent_field(&ev, "cart.lines");
    assert_int_equal(json_integer_value(v), 3);
    json_decref(v);
    v = jevent_field(&ev, "type");
    assert_string_equal(json_string_value(v), "cart_updated");
    json_decref(v);
    assert_null(jevent_field(&ev, "missing"));
    jevent_free(&ev);
}

/* The text an instance keeps is the event's object: the envelope as
 * jansson's compact dump writes it, data as it came when it was read
 * plainly (its bytes), else as the dump writes it; whatever its strings
 * and numbers hold, it reads back as the same object. */
static void test_event_text(void **st)
{
    const char *cases[] = {
        "{\"id\": \"e\\\"1\\\\x\\u0001\\t\\u00e9\\u2028/\", \"type\": \"cart\", \"profile\": "
        "\"p\\u00fcl\", \"time\": \"2026-11-23T10:00:00Z\", \"data\": {\"total\": 59.9, \"n\": -3,"
        " \"tiny\": 1e-300, \"big\": 1.7976931348623157e308, \"list\": [1, \"two\", null, true],"
        " \"deep\": {\"a\": {\"b\": \"\\u001fx\"}}}}",
        "{\"type\": \"signup\", \"profile\": 42, \"time\": \"1969-07-20T20:17:40Z\"}",
        "{\"id\": \"x\", \"type\": \"t\", \"profile\": \"p\", \"data\": {}}",
        "{\"id\": \"x\", \"type\": \"t\", \"profile\": \"p\", \"data\": {\"a\" :\n[1, 2.5e3,"
        " {\"b\": \"caf\xc3\xa9\"}], \"c\": null}}",
        "{\"id\": \"x\", \"type\": \"t\", \"profile\": \"p\", \"data\": {\"a\": \"\\n\"}}",
        "{\"id\": \"x\", \"type\": \"t\", \"profile\": \"p\", \"data\": null}",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        jevent ev;
        char why[256];
        assert_int_equal(
            jevent_parse(cases[i], strlen(cases[i]), 1795428000123LL, &ev, why, sizeof why), 0);
        json_t *o = jevent_json(&ev);
        char *dump = json_dumps(o, JSON_COMPACT), *got = jevent_text(&ev);
        json_t *back = json_loads(got, JSON_REJECT_DUPLICATES, NULL);
        if (!back || !json_equal(back, o))
            fail_msg("case %zu: %s does not read back as %s", i, got, dump);
        /* the envelope is the dump's, byte for byte, up to data */
        const char *d = strstr(dump, ",\"data\":");
        assert_non_null(d);
        assert_memory_equal(got, dump, (size_t)(d - dump) + 8);
        json_decref(back);
        free(dump);
        free(got);
        json_decref(o);
        jevent_free(&ev);
    }
}

/* An event read from the start of a longer body (the HTTP face's array)
 * is the event jevent_parse makes of its bytes alone, text included. */
static void test_event_read_object(void **st)
{
    const char *cases[] = {
        "{\"id\": \"x\", \"type\": \"t\", \"profile\": \"p\", \"data\": {\"a\" :\n[1, 2.5e3,"
        " {\"b\": \"caf\xc3\xa9\"}], \"c\": null}}",
        "{\"type\": \"signup\", \"profile\": 42, \"time\": \"1969-07-20T20:17:40Z\"}",
        "{\"id\":\"x\",\"type\":\"t\",\"profile\":\"p\",\"data\":{}}",
        "{\"id\": \"x\", \"type\": \"t\", \"profile\": \"p\", \"data\": {\"a\": \"\\n\"}}",
    };
    size_t read = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char body[512];
        int n = snprintf(body, sizeof body, "%s , {\"id\": \"next\"}]", cases[i]);
        size_t used = 0, doff = 0, dlen = 0, len = strlen(cases[i]);
        json_t *v = jevent_read_object(body, (size_t)n, &used, &doff, &dlen);
        if (!v) /* not plain (an escape): json_loadb's to read */
            continue;
        read++;
        assert_int_equal(used, len);
        jevent a, b;
        char why[256];
        assert_int_equal(jevent_from_json(v, body, used, 7, &a, why, sizeof why), 0);
        if (a.data && dlen) {
            a.data_off = doff;
            a.data_len = dlen;
        }
        assert_int_equal(jevent_parse(cases[i], len, 7, &b, why, sizeof why), 0);
        char *ta = jevent_text(&a), *tb = jevent_text(&b);
        assert_string_equal(ta, tb);
        assert_int_equal(a.data_len, b.data_len);
        free(ta);
        free(tb);
        jevent_free(&a);
        jevent_free(&b);
        json_decref(v);
    }
    assert_int_equal(read, 3);
}

static void inbox_put_at(jinbox *b, int i, int64_t received)
{
    char json[128], why[256], err[256];
    snprintf(json, sizeof json, "{\"id\": \"e%d\", \"type\": \"t\", \"profile\": \"p\"}", i);
    jevent ev;
    assert_int_equal(jevent_parse(json, strlen(json), received, &ev, why, sizeof why), 0);
    int64_t seq;
    int outcome;
    assert_int_equal(jinbox_put(b, &ev, NULL, "t", received, &seq, &outcome, err, sizeof err), 0);
    assert_int_equal(outcome, JINBOX_STORED);
    jevent_free(&ev);
}

/* The inbox forgets the oldest events up to the first young one, at most
 * max a call, and only processed ones (seq <= upto); a forgotten id is
 * new again. */
static void test_inbox_prune(void **st)
{
    jinbox b;
    char err[256];
    assert_int_equal(jinbox_open(&b, ":memory:", err, sizeof err), 0);
    /* e0..e5 a week old, e6..e8 young, e9 old again (a clock set back) */
    for (int i = 0; i < 10; i++)
        inbox_put_at(&b, i, i < 6 || i == 9 ? 1000 + i : 9000 + i);
    assert_int_equal(jinbox_prune(&b, 3, 5000, 100), 3);  /* not past upto */
    assert_int_equal(jinbox_prune(&b, 10, 5000, 2), 2);   /* at most max */
    assert_int_equal(jinbox_prune(&b, 10, 5000, 100), 1); /* up to e6 */
    assert_int_equal(jinbox_prune(&b, 10, 5000, 100), 0);
    inbox_put_at(&b, 0, 9100); /* forgotten: stored again */
    assert_int_equal(jinbox_last(&b), 11);
    jinbox_close(&b);
}

static void test_event_defaults(void **st)
{
    /* no id: a hash of the bytes, the same for the same bytes; no time:
     * the receive time; a numeric profile id is taken as text */
    const char *j = "{\"type\": \"t\", \"profile\": 42}";
    jevent a, b;
    char why[256];
    assert_int_equal(jevent_parse(j, strlen(j), 7000, &a, why, sizeof why), 0);
    assert_int_equal(jevent_parse(j, strlen(j), 9000, &b, why, sizeof why), 0);
    assert_string_equal(a.id, b.id);
    assert_true(strncmp(a.id, "h:", 2) == 0);
    assert_int_equal(a.time_ms, 7000);
    assert_string_equal(a.profile, "42");
    jevent_free(&a);
    jevent_free(&b);
}

static void expect_bad(const char *json, const char *reason_part)
{
    jevent ev;
    char why[256] = "";
    assert_int_equal(jevent_parse(json, strlen(json), 0, &ev, why, sizeof why), -1);
    if (!strstr(why, reason_part))
        fail_msg("for %s: reason '%s' lacks '%s'", json, why, reason_part);
    assert_string_equal(ev.raw, json); /* kept for the dead-letter table */
    jevent_free(&ev);
}

static void test_event_malformed(void **st)
{
    expect_bad("{\"type\": \"t\", ", "not JSON");
    expect_bad("[1, 2]", "not a JSON object");
    expect_bad("{\"profile\": \"p1\"}", "no 'type'");
    expect_bad("{\"type\": \"t\"}", "no 'profile'");
    expect_bad("{\"type\": \"\", \"profile\": \"p\"}", "'type' must be");
    expect_bad("{\"type\": \"t\", \"profile\": [1]}", "'profile' must be");
    expect_bad("{\"type\": \"t\", \"profile\": \"p\", \"time\": \"yesterday\"}", "'time'");
    expect_bad("{\"type\": \"t\", \"profile\": \"p\", \"data\": 3}", "'data'");
    expect_bad("{\"type\": \"t\", \"profile\": \"p\", \"id\": 3.5}", "'id'");
    /* hostile bytes: each a reason, never a crash */
    expect_bad("{\"type\": \"t\", \"profile\": \"p\\ud800\"}", "invalid Unicode");
    expect_bad("{\"type\": \"t\", \"profile\": \"p\\u0000\"}", "not JSON");
    expect_bad("{\"type\": \"t\", \"profile\": \"p\xc3\"}", "not UTF-8: byte 0xc3 at offset 27");
    /* a NUL and what follows are kept: the copy is byte for byte */
    static const char nul[] = "{\"type\": \"t\", \"profile\": \"p\"}\0tail";
    jevent ev;
    char why[256];
    assert_int_equal(jevent_parse(nul, sizeof nul - 1, 0, &ev, why, sizeof why), -1);
    assert_string_equal(why, "a NUL byte at offset 29");
    assert_int_equal(ev.rawlen, sizeof nul - 1);
    assert_memory_equal(ev.raw, nul, sizeof nul);
    jevent_free(&ev);
    /* nesting past jansson's bound (2048) is refused by jansson */
    enum { DEPTH = 3000 };
    char *deep = malloc(DEPTH * 2 + 64), *p = deep;
    p += sprintf(p, "{\"type\": \"t\", \"profile\": \"p\", \"data\": {\"a\": ");
    for (int i = 0; i < DEPTH; i++)
        *p++ = '[';
    for (int i = 0; i < DEPTH; i++)
        *p++ = ']';
    sprintf(p, "}}");
    expect_bad(deep, "maximum parsing depth");
    free(deep);
}

/* jevent_parse reads most events without json_loadb: what it makes of
 * every input, accepted or refused, is what jansson makes of it. The
 * inputs: JSON's edges (numbers, escapes, whitespace, nesting, duplicate
 * keys, what follows the object) in the data of an envelope, and the
 * same envelope cut at every byte. */
static void expect_as_jansson(const char *json)
{
    jevent ev;
    char why[256] = "";
    int rc = jevent_parse(json, strlen(json), 0, &ev, why, sizeof why);
    json_error_t je;
    json_t *want = json_loadb(json, strlen(json), JSON_REJECT_DUPLICATES, &je);
    json_t *data = want ? json_object_get(want, "data") : NULL;
    if (!want) {
        if (rc != -1 || !strstr(why, "not JSON"))
            fail_msg("%s: jansson refuses it (%s), jevent_parse: %d '%s'", json, je.text, rc, why);
    } else if (rc == 0) {
        if (!(data ? json_equal(data, ev.data) : !ev.data))
            fail_msg("%s: data differs from jansson's", json);
        /* an integer stays an integer, a real a real */
        char *a = json_dumps(data ? data : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
        char *b = json_dumps(ev.data ? ev.data : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
        if (strcmp(a, b))
            fail_msg("%s: data %s, jansson %s", json, b, a);
        free(a);
        free(b);
    } else if (strstr(why, "not JSON")) {
        fail_msg("%s: jansson reads it, jevent_parse says %s", json, why);
    }
    json_decref(want);
    jevent_free(&ev);
}

static void test_event_reader(void **st)
{
    const char *values[] = {
        "0",
        "-0",
        "7",
        "-12",
        "1.5",
        "-0.0",
        "1e5",
        "1E+2",
        "2e-3",
        "1.25e-300",
        "1e-400",
        "1e400",
        "-1e400",
        "9223372036854775807",
        "-9223372036854775808",
        "9223372036854775808",
        "-9223372036854775809",
        "01",
        "1.",
        ".5",
        "-",
        "+1",
        "1e",
        "1e+",
        "0x10",
        "1.5.2",
        "00",
        "-01",
        "\"\"",
        "\"a b\"",
        "\"\\u00e9\"",
        "\"\\\"\"",
        "\"a\\nb\"",
        "\"\t\"",
        "\"\x7f\"",
        "\"caf\xc3\xa9\"",
        "true",
        "false",
        "null",
        "tru",
        "nul",
        "truex",
        "[]",
        "{}",
        "[1,2,[3,{\"a\":[]}]]",
        "[1,]",
        "[,1]",
        "{\"a\":1,}",
        "{\"a\" 1}",
        "{\"a\":1 \"b\":2}",
        "{\"a\":1,\"a\":2}",
        "{\"a\":{\"b\":1},\"c\":{\"b\":2}}",
        " [ 1 , 2 ] ",
        "\n{\r\"k\"\t:\n1}",
        "{1:2}",
        "[\"\\ud800\"]",
        "\"\\u0000\"",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]"
        "]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
    };
    char buf[512];
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        snprintf(buf, sizeof buf, "{\"type\": \"t\", \"profile\": \"p\", \"data\": {\"v\": %s}}",
                 values[i]);
        expect_as_jansson(buf);
        snprintf(buf, sizeof buf, "{\"type\":\"t\",\"profile\":\"p\",\"data\":[%s]}", values[i]);
        expect_as_jansson(buf);
    }
    const char *tails[] = {"", " ", "\n", " x", "{}", ",", "]", "}"};
    for (size_t i = 0; i < sizeof tails / sizeof tails[0]; i++) {
        snprintf(buf, sizeof buf, "{\"type\": \"t\", \"profile\": \"p\"}%s", tails[i]);
        expect_as_jansson(buf);
    }
    const char *env = "{\"id\": \"e-1\", \"type\": \"cart\", \"profile\": \"p1\", \"time\":"
                      " \"2026-11-23T10:00:00Z\", \"data\": {\"total\": 12.5, \"n\": [1, true]}}";
    for (size_t cut = 0; cut <= strlen(env); cut++) {
        snprintf(buf, sizeof buf, "%.*s", (int)cut, env);
        expect_as_jansson(buf);
    }
    expect_bad("{\"type\": \"t\", \"profile\": \"p\", \"type\": \"u\"}", "duplicate");
}

/* ---- timers ------------------------------------------------------- */

static void test_timers_order(void **st)
{
    jtimers h;
    jtimers_init(&h);
    srand(7);
    for (int i = 1; i <= 5000; i++)
        jtimers_set(&h, rand() % 1000, i);
    jtimer t, prev = {-1, -1};
    assert_int_equal(jtimers_pop_due(&h, -1, &t), 0); /* nothing due yet */
    size_t n = 0;
    while (jtimers_pop_due(&h, 500, &t)) {
        assert_true(t.due_ms > prev.due_ms || (t.due_ms == prev.due_ms && t.inst > prev.inst));
        assert_true(t.due_ms <= 500);
        prev = t;
        n++;
    }
    assert_true(jtimers_peek(&h, &t));
    assert_true(t.due_ms > 500);
    while (jtimers_pop_due(&h, 1000, &t))
        n++;
    assert_int_equal(n, 5000);
    jtimers_trim(&h);
    jtimers_free(&h);
}

/* Against a plain array: instances wait, move their wake-up, move on
 * before it (removed), or are popped when due; the heap holds exactly the
 * waiting ones and pops them in order. */
static void test_timers_model(void **st)
{
    enum { N = 3000 };
    static int64_t due[N + 1]; /* -1: not waiting */
    for (int i = 0; i <= N; i++)
        due[i] = -1;
    jtimers h;
    jtimers_init(&h);
    srand(11);
    int64_t now = 0;
    for (int step = 0; step < 200000; step++) {
        int64_t inst = 1 + rand() % N;
        int op = rand() % 10;
        if (op < 5) {
            due[inst] = now + rand() % 500;
            jtimers_set(&h, due[inst], inst);
        } else if (op < 8) {
            due[inst] = -1;
            jtimers_remove(&h, inst);
        } else {
            now += rand() % 20;
            jtimer t;
            int64_t last = -1;
            while (jtimers_pop_due(&h, now, &t)) {
                assert_true(t.due_ms <= now);
                assert_true(t.due_ms >= last);
                assert_int_equal(due[t.inst], t.due_ms);
                last = t.due_ms;
                due[t.inst] = -1;
            }
        }
        if (step % 997 == 0) {
            size_t waiting = 0;
            int64_t first = -1;
            for (int i = 1; i <= N; i++)
                if (due[i] >= 0) {
                    waiting++;
                    if (first < 0 || due[i] < first)
                        first = due[i];
                }
            assert_int_equal(h.n, waiting);
            jtimer t;
            if (waiting) {
                assert_true(jtimers_peek(&h, &t));
                assert_int_equal(t.due_ms, first);
            }
            jtimers_trim(&h);
        }
    }
    jtimers_free(&h);
}

/* ---- journey files ------------------------------------------------ */

static const char *cart =
    "journey: {\n"
    "  name = \"cart\";\n"
    "  entry = { event = \"cart_updated\"; reentry = \"after 7d\"; };\n"
    "  exit  = ( { event = \"order_placed\"; }, { event = \"unsubscribed\"; } );\n"
    "  start = \"wait1\";\n"
    "  nodes = (\n"
    "    { id = \"wait1\"; type = \"wait\"; duration = \"1h\"; next = \"mail1\"; },\n"
    "    { id = \"mail1\"; type = \"send\"; channel = \"email\"; subject = \"Your cart\"; text = "
    "\"...\"; next = \"react\"; },\n"
    "    { id = \"react\"; type = \"wait_event\"; event = \"order_placed\"; timeout = \"24h\";\n"
    "      on_event = \"done\"; on_timeout = \"points\"; },\n"
    "    { id = \"points\"; type = \"action\"; action = \"loyalty\"; next = \"done\"; on_error = "
    "\"done\"; },\n"
    "    { id = \"done\"; type = \"end\"; }\n"
    "  );\n"
    "};\n";

static journey *load_text(const char *name, const char *text, diag *d)
{
    char *path = file_write(dir, name, text);
    journey *j = journey_load(path, NULL, d);
    free(path);
    return j;
}

static void test_file_ok(void **st)
{
    diag d;
    diag_init(&d);
    journey *j = load_text("cart.cfg", cart, &d);
    assert_non_null(j);
    assert_int_equal(d.errors, 0);
    assert_string_equal(j->name, "cart");
    assert_int_equal(j->reentry, JR_AFTER);
    assert_int_equal(j->reentry_after_ms, 7 * 86400 * 1000LL);
    assert_int_equal(j->nexits, 2);
    assert_int_equal(j->nnodes, 5);
    assert_int_equal(j->start, 0);
    const jnode *r = &j->nodes[journey_node(j, "react")];
    assert_int_equal(r->type, JN_WAIT_EVENT);
    assert_int_equal(r->timeout_ms, 24 * 3600 * 1000LL);
    assert_string_equal(j->nodes[r->on_event].id, "done");
    assert_string_equal(j->nodes[r->on_timeout].id, "points");
    const jnode *m = &j->nodes[1];
    assert_int_equal(m->nparts, 2);
    assert_string_equal(m->parts[0].name, "subject");
    journey_free(j);
    diag_free(&d);
}

/* Every message of d joined, for substring checks. */
static char *messages(const diag *d)
{
    size_t cap = 1;
    for (size_t i = 0; i < d->n; i++)
        cap += strlen(d->v[i].msg) + 32;
    char *s = calloc(1, cap);
    for (size_t i = 0; i < d->n; i++) {
        char line[32];
        snprintf(line, sizeof line, "%d: ", d->v[i].line);
        strcat(s, line);
        strcat(s, d->v[i].msg);
        strcat(s, "\n");
    }
    return s;
}

static void expect_errors(const char *text, const char *const *parts)
{
    diag d;
    diag_init(&d);
    journey *j = load_text("bad.cfg", text, &d);
    assert_null(j);
    assert_true(d.errors > 0);
    char *all = messages(&d);
    for (const char *const *p = parts; *p; p++)
        if (!strstr(all, *p))
            fail_msg("expected '%s' among:\n%s", *p, all);
    free(all);
    for (size_t i = 0; i < d.n; i++)
        assert_non_null(d.v[i].file);
    diag_free(&d);
}

static void test_file_errors(void **st)
{
    const char *text =
        "journey: {\n"                                                                  /* 1 */
        "  name = \"bad\";\n"                                                           /* 2 */
        "  entry = { event = \"e\"; reentry = \"sometimes\"; };\n"                      /* 3 */
        "  start = \"frist\";\n"                                                        /* 4 */
        "  nodes = (\n"                                                                 /* 5 */
        "    { id = \"first\"; type = \"wiat\"; duration = \"1h\"; },\n"                /* 6 */
        "    { id = \"w\"; type = \"wait\"; duration = \"soon\"; next = \"fist\"; },\n" /* 7 */
        "    { id = \"we\"; type = \"wait_event\"; on_event = \"w\"; },\n"              /* 8 */
        "    { id = \"s\"; type = \"split\"; branches = ( { percent = 60; next = \"w\"; },\n" /* 9
                                                                                               */
        "        { percent = 30; next = \"w\"; } ); },\n"        /* 10 */
        "    { id = \"a\"; type = \"action\"; nxt = \"w\"; },\n" /* 11 */
        "    { id = \"w\"; type = \"end\"; }\n"                  /* 12 */
        "  );\n"
        "};\n";
    const char *const parts[] = {
        "3: entry: reentry = \"sometimes\" is not one of: never, always, after <duration>",
        "6: node 'first': unknown type 'wiat' (did you mean 'wait'?)",
        "7: node 'w': duration = \"soon\" is not a duration",
        "7: node 'w': next = \"fist\" names no node (did you mean 'first'?)",
        "8: node 'we': missing required key 'event'",
        "9: node 's': branch percentages add up to 90, not 100",
        "11: node 'a': unknown key 'nxt' (did you mean 'next'?)",
        "11: node 'a': missing required key 'action'",
        "12: node 'w' is defined twice (first at line 7)",
        "4: start = \"frist\" names no node (did you mean 'first'?)",
        NULL};
    expect_errors(text, parts);
}

static void test_file_loop_without_wait(void **st)
{
    const char *text =
        "journey: { name = \"loop\"; entry = { event = \"e\"; }; start = \"a\";\n"
        "  nodes = (\n"
        "    { id = \"a\"; type = \"split\"; branches = ( { percent = 100; next = \"b\"; } ); },\n"
        "    { id = \"b\"; type = \"send\"; channel = \"c\"; text = \"x\"; next = \"a\"; }\n"
        "  ); };\n";
    const char *const parts[] = {"part of a loop with no wait or wait_event", NULL};
    expect_errors(text, parts);
    const char *syntax = "journey: { name = \"x\";\n entry = ; };\n";
    const char *const p2[] = {"2: syntax error", NULL};
    expect_errors(syntax, p2);
}

/* ---- the engine, through journey test ------------------------------ */

static json_t *(*sim_profile)(void *, const char *);
static json_t *(*sim_lookup)(void *, const char *, const char *, json_t *);

static json_t *simulate(const char *jtext, const char *events, int64_t until,
                        int (*enabled)(void *, const char *))
{
    diag d;
    diag_init(&d);
    journey *j = load_text("sim.cfg", jtext, &d);
    if (!j) {
        diag_print(&d, stderr);
        fail_msg("journey did not load");
    }
    char *ev = file_write(dir, "events.jsonl", events);
    jengine_ops ops = {.channel_enabled = enabled, .profile = sim_profile, .lookup = sim_lookup};
    json_t *out = NULL;
    char err[256];
    assert_int_equal(journey_simulate(j, &ops, ev, until, &out, &d, err, sizeof err), 0);
    assert_int_equal(d.errors, 0);
    assert_non_null(out);
    free(ev);
    journey_free(j);
    diag_free(&d);
    return out;
}

static void assert_path(json_t *out, const char *pid, const char *state, const char *path)
{
    json_t *p = json_object_get(json_object_get(out, "profiles"), pid);
    if (!p)
        fail_msg("profile %s absent", pid);
    if (strcmp(json_string_value(json_object_get(p, "state")), state))
        fail_msg("profile %s: state %s, expected %s", pid,
                 json_string_value(json_object_get(p, "state")), state);
    char got[1024] = "";
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(p, "path"), i, v)
    {
        if (i)
            strcat(got, " ");
        strcat(got, json_string_value(v));
    }
    assert_string_equal(got, path);
}

#define EV(id, type, prof, time)                                                                   \
    "{\"id\": \"" id "\", \"type\": \"" type "\", \"profile\": \"" prof "\", \"time\": \"" time    \
    "\"}\n"

static void test_sim_paths(void **st)
{
    const char *events =
        EV("1", "cart_updated", "p1", "2026-11-23T10:00:00Z") /* reacts: completes */
        EV("2", "order_placed", "p1", "2026-11-23T12:00:00Z")
            EV("3", "cart_updated", "p2", "2026-11-23T10:00:00Z") /* times out: action */
        EV("4", "cart_updated", "p3", "2026-11-23T10:00:00Z")     /* exits while waiting */
        EV("5", "unsubscribed", "p3", "2026-11-23T10:30:00Z")
            EV("6", "cart_updated", "p4", "2026-11-24T10:00:00Z") /* still waiting */
        EV("7", "order_placed", "p5", "2026-11-23T10:00:00Z");    /* never entered */
    json_t *out = simulate(cart, events, INT64_MAX, NULL);
    assert_path(out, "p1", "completed", "wait1 mail1 react done");
    assert_path(out, "p2", "completed", "wait1 mail1 react points done");
    assert_path(out, "p3", "exited", "wait1");
    assert_path(out, "p4", "completed", "wait1 mail1 react points done");
    assert_null(json_object_get(json_object_get(out, "profiles"), "p5"));
    json_t *sent = json_object_get(json_object_get(json_object_get(out, "profiles"), "p2"), "sent");
    assert_int_equal(json_array_size(sent), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(sent, 0), "channel")),
                        "email");
    assert_string_equal(json_string_value(json_object_get(json_array_get(sent, 1), "action")),
                        "loyalty");
    assert_int_equal(json_integer_value(json_object_get(out, "dead_letters")), 0);
    json_decref(out);

    /* --until stops the clock: p4 is still waiting in its first wait */
    int64_t until = 1795514400000LL + 1800 * 1000; /* 2026-11-24T10:30:00Z */
    out = simulate(cart, events, until, NULL);
    assert_path(out, "p4", "waiting", "wait1");
    assert_path(out, "p2", "waiting", "wait1 mail1 react"); /* its timeout is at 11:00 */
    json_decref(out);
}

static int email_off(void *ud, const char *ch)
{
    return strcmp(ch, "email") != 0;
}

static void test_sim_disabled_channel(void **st)
{
    json_t *out =
        simulate(cart, EV("1", "cart_updated", "p1", "2026-11-23T10:00:00Z"), INT64_MAX, email_off);
    assert_path(out, "p1", "completed", "wait1 mail1 react points done");
    json_t *sent = json_object_get(json_object_get(json_object_get(out, "profiles"), "p1"), "sent");
    assert_int_equal(json_array_size(sent), 1); /* only the action */
    assert_string_equal(json_string_value(json_object_get(json_array_get(sent, 0), "node")),
                        "points");
    json_decref(out);
}

static void test_sim_duplicates_and_dead_letters(void **st)
{
    const char *events = EV("1", "cart_updated", "p1", "2026-11-23T10:00:00Z") EV(
        "1", "cart_updated", "p1", "2026-11-23T10:00:00Z") "this is not json\n"
                                                           "{\"type\": \"cart_updated\"}\n"
                                                           "\n"
                                                           "{\"id\": \"x\", \"profile\": \"p9\"}\n";
    const char *j =
        "journey: { name = \"once\"; entry = { event = \"cart_updated\"; reentry = \"always\"; };\n"
        " start = \"s\"; nodes = ( { id = \"s\"; type = \"send\"; channel = \"sms\"; text = "
        "\"hi\"; next = \"e\"; },\n"
        " { id = \"e\"; type = \"end\"; } ); };\n";
    json_t *out = simulate(j, events, INT64_MAX, NULL);
    /* reentry = always, but the second copy of event 1 is the same event */
    assert_path(out, "p1", "completed", "s e");
    assert_int_equal(json_integer_value(json_object_get(out, "dead_letters")), 3);
    json_decref(out);
}

static void test_sim_reentry(void **st)
{
#define TMPL                                                                                       \
    "journey: { name = \"r\"; entry = { event = \"go\"; reentry = \"%s\"; };\n"                    \
    " start = \"w\"; nodes = ( { id = \"w\"; type = \"wait\"; duration = \"1h\"; next = \"e\"; "   \
    "},\n"                                                                                         \
    " { id = \"e\"; type = \"end\"; } ); };\n"
    const char *events = EV("1", "go", "p", "2026-11-23T10:00:00Z")
        EV("2", "go", "p", "2026-11-23T10:30:00Z") /* active: ignored */
        EV("3", "go", "p", "2026-11-23T12:00:00Z") EV("4", "go", "p", "2026-11-25T12:00:00Z");
    char text[1024];
    snprintf(text, sizeof text, TMPL, "never");
    json_t *out = simulate(text, events, INT64_MAX, NULL);
    assert_path(out, "p", "completed", "w e");
    json_decref(out);
    snprintf(text, sizeof text, TMPL, "always");
    out = simulate(text, events, INT64_MAX, NULL);
    assert_path(out, "p", "completed", "w e w e w e");
    json_decref(out);
    snprintf(text, sizeof text, TMPL, "after 2d");
    out = simulate(text, events, INT64_MAX, NULL);
    assert_path(out, "p", "completed", "w e w e"); /* 1 and 4 */
    json_decref(out);
}

static void test_sim_split_stable(void **st)
{
    const char *j = "journey: { name = \"ab\"; entry = { event = \"go\"; reentry = \"always\"; };\n"
                    " start = \"s\"; nodes = ( { id = \"s\"; type = \"split\"; branches = (\n"
                    "   { name = \"a\"; percent = 30; next = \"a\"; }, { name = \"b\"; percent = "
                    "70; next = \"b\"; } ); },\n"
                    " { id = \"a\"; type = \"end\"; }, { id = \"b\"; type = \"end\"; } ); };\n";
    char *events = calloc(1, 2000 * 128);
    for (int i = 0; i < 2000; i++) {
        char line[128];
        /* each profile twice: it must take the same branch both times */
        snprintf(line, sizeof line,
                 "{\"id\": \"%d\", \"type\": \"go\", \"profile\": \"p%d\", \"time\": "
                 "\"2026-11-23T10:00:%02dZ\"}\n",
                 i, i % 1000, i / 1000);
        strcat(events, line);
    }
    json_t *out = simulate(j, events, INT64_MAX, NULL);
    free(events);
    int a = 0;
    const char *pid;
    json_t *p;
    json_object_foreach(json_object_get(out, "profiles"), pid, p)
    {
        json_t *path = json_object_get(p, "path");
        assert_int_equal(json_array_size(path), 4);
        assert_string_equal(json_string_value(json_array_get(path, 1)),
                            json_string_value(json_array_get(path, 3)));
        a += !strcmp(json_string_value(json_array_get(path, 1)), "a");
    }
    assert_int_equal(json_object_size(json_object_get(out, "profiles")), 1000);
    assert_in_range(a, 250, 350); /* 30% of 1000, give or take */
    json_decref(out);
}

static void test_sim_wait_event_without_timeout(void **st)
{
    const char *j = "journey: { name = \"we\"; entry = { event = \"signup\"; };\n"
                    " start = \"r\"; nodes = ( { id = \"r\"; type = \"wait_event\"; event = "
                    "\"confirm\"; on_event = \"e\"; },\n"
                    " { id = \"e\"; type = \"end\"; } ); };\n";
    json_t *out = simulate(j,
                           EV("1", "signup", "p", "2026-11-23T10:00:00Z")
                               EV("2", "signup", "q", "2026-11-23T10:00:00Z")
                                   EV("3", "confirm", "q", "2027-01-01T00:00:00Z"),
                           INT64_MAX, NULL);
    /* no node timeout: the journey's (91d by default) ends it */
    assert_path(out, "p", "timed_out", "r");
    assert_path(out, "q", "completed", "r e"); /* 39 days later: within 91 */
    json_decref(out);
    out = simulate(j, EV("1", "signup", "p", "2026-11-23T10:00:00Z"),
                   1795514400000LL + 89 * 86400000LL, NULL);
    assert_path(out, "p", "waiting", "r");
    json_decref(out);
}

/* timeout = "2d" on the journey bounds every wait (a 5d wait, an event
 * with no timeout); start_at/end_at bound entries by the clock. */
static void test_sim_lifecycle(void **st)
{
    const char *j = "journey: { name = \"life\"; timeout = \"2d\";\n"
                    " start_at = \"2026-11-23T00:00:00Z\"; end_at = \"2026-11-25T00:00:00Z\";\n"
                    " entry = { event = \"signup\"; reentry = \"always\"; };\n"
                    " start = \"w\"; nodes = (\n"
                    " { id = \"w\"; type = \"wait\"; duration = \"5d\"; next = \"r\"; },\n"
                    " { id = \"r\"; type = \"wait_event\"; event = \"confirm\"; on_event = "
                    "\"e\"; },\n"
                    " { id = \"e\"; type = \"end\"; } ); };\n";
    json_t *out = simulate(j,
                           EV("1", "signup", "early", "2026-11-22T23:59:59Z")
                               EV("2", "signup", "p", "2026-11-23T10:00:00Z")
                                   EV("3", "signup", "late", "2026-11-25T00:00:00Z"),
                           INT64_MAX, NULL);
    assert_null(json_object_get(json_object_get(out, "profiles"), "early"));
    assert_null(json_object_get(json_object_get(out, "profiles"), "late"));
    assert_path(out, "p", "timed_out", "w");
    json_decref(out);
    /* one second before the 2 days: still waiting */
    out = simulate(j, EV("2", "signup", "p", "2026-11-23T10:00:00Z"),
                   1795514400000LL - 86400000LL + 2 * 86400000LL - 1000, NULL);
    assert_path(out, "p", "waiting", "w");
    json_decref(out);
    const char *bad = "journey: { name = \"x\"; timeout = \"soon\"; end_at = \"yesterday\";\n"
                      " entry = { event = \"e\"; }; start = \"a\";\n"
                      " nodes = ( { id = \"a\"; type = \"end\"; } ); };\n";
    const char *const parts[] = {"1: journey: timeout = \"soon\" is not a duration",
                                 "1: journey: end_at = \"yesterday\" is not an ISO 8601", NULL};
    expect_errors(bad, parts);
}

/* profiles: p1 gold with consent, p2 silver without */
static json_t *profiles(void *ud, const char *id)
{
    if (!strcmp(id, "p1"))
        return json_pack("{s:s, s:s, s:b, s:s}", "id", "p1", "tier", "gold", "consent_push", 1,
                         "city", "Oslo");
    if (!strcmp(id, "p2"))
        return json_pack("{s:s, s:s, s:b, s:s}", "id", "p2", "tier", "silver", "consent_push", 0,
                         "city", "Nice");
    return NULL;
}

static int lookups;
static json_t *weather(void *ud, const char *source, const char *id, json_t *event)
{
    lookups++;
    if (strcmp(source, "weather"))
        return NULL;
    json_t *prof = profiles(NULL, id);
    const char *city = prof ? json_string_value(json_object_get(prof, "city")) : "";
    json_t *o = json_pack("{s:f}", "temperature", !strcmp(city, "Oslo") ? -3.0 : 18.5);
    json_decref(prof);
    return o;
}

static void test_sim_conditions(void **st)
{
    const char *j =
        "journey: { name = \"cond\";\n"
        "  entry = { event = \"cart\"; filter = \"event.total > 0\"; };\n"
        "  exit = ( { event = \"cancel\"; filter = \"event.reason == 'fraud'\"; } );\n"
        "  start = \"which\";\n"
        "  nodes = (\n"
        "    { id = \"which\"; type = \"condition\";\n"
        "      branches = ( { when = \"profile.consent_push and weather.temperature < 5\"; next = "
        "\"push\"; },\n"
        "                   { when = \"event.items >= 3\"; next = \"big\"; } );\n"
        "      otherwise = \"later\"; },\n"
        "    { id = \"push\"; type = \"send\"; channel = \"push\"; title = \"Cold in {{ "
        "profile.city }}?\"; next = \"end\"; },\n"
        "    { id = \"big\"; type = \"end\"; },\n"
        "    { id = \"later\"; type = \"wait\"; until = \"event.time + 2h\"; next = \"react\"; },\n"
        "    { id = \"react\"; type = \"wait_event\"; event = \"order\"; filter = \"react.amount "
        ">= 10\"; on_event = \"end\"; },\n"
        "    { id = \"end\"; type = \"end\"; }\n"
        "  ); };\n";
    const char *events = "{\"id\": \"1\", \"type\": \"cart\", \"profile\": \"p1\", \"time\": "
                         "\"2026-11-23T10:00:00Z\", \"data\": {\"total\": 10}}\n"
                         "{\"id\": \"2\", \"type\": \"cart\", \"profile\": \"p2\", \"time\": "
                         "\"2026-11-23T10:00:00Z\", \"data\": {\"total\": 10, \"items\": 4}}\n"
                         "{\"id\": \"3\", \"type\": \"cart\", \"profile\": \"p3\", \"time\": "
                         "\"2026-11-23T10:00:00Z\", \"data\": {\"total\": 0}}\n"
                         "{\"id\": \"4\", \"type\": \"cart\", \"profile\": \"p4\", \"time\": "
                         "\"2026-11-23T10:00:00Z\", \"data\": {\"total\": 5}}\n"
                         "{\"id\": \"5\", \"type\": \"order\", \"profile\": \"p4\", \"time\": "
                         "\"2026-11-23T13:00:00Z\", \"data\": {\"amount\": 5}}\n"
                         "{\"id\": \"6\", \"type\": \"cancel\", \"profile\": \"p4\", \"time\": "
                         "\"2026-11-23T13:10:00Z\", \"data\": {\"reason\": \"changed mind\"}}\n"
                         "{\"id\": \"7\", \"type\": \"order\", \"profile\": \"p4\", \"time\": "
                         "\"2026-11-23T14:00:00Z\", \"data\": {\"amount\": 25}}\n"
                         "{\"id\": \"8\", \"type\": \"cart\", \"profile\": \"p5\", \"time\": "
                         "\"2026-11-23T10:00:00Z\", \"data\": {\"total\": 5}}\n"
                         "{\"id\": \"9\", \"type\": \"cancel\", \"profile\": \"p5\", \"time\": "
                         "\"2026-11-23T10:30:00Z\", \"data\": {\"reason\": \"fraud\"}}\n";
    sim_profile = profiles;
    sim_lookup = weather;
    lookups = 0;
    json_t *out = simulate(j, events, INT64_MAX, NULL);
    sim_profile = NULL;
    sim_lookup = NULL;
    assert_path(out, "p1", "completed", "which push end");                /* consent, -3 degrees */
    assert_path(out, "p2", "completed", "which big");                     /* no consent; 4 items */
    assert_null(json_object_get(json_object_get(out, "profiles"), "p3")); /* total 0 */
    /* p4: the wait ends at 12:00; an order of 5 does not match the filter,
     * a cancel that is not fraud does not exit, the order of 25 does */
    assert_path(out, "p4", "completed", "which later react end");
    assert_path(out, "p5", "exited", "which later");
    assert_true(lookups > 0);
    json_decref(out);
}

/* A wait_event's event is <node id>.* in its filter and every later node;
 * event.* stays the entry event. Two waits: each filter compares the
 * reaction with the entry event or the earlier reaction, and the last
 * condition reads both reactions and the entry event. */
static void test_sim_reaction_data(void **st)
{
    const char *j =
        "journey: { name = \"react\";\n"
        "  entry = { event = \"cart\"; };\n"
        "  start = \"w1\";\n"
        "  nodes = (\n"
        "    { id = \"w1\"; type = \"wait_event\"; event = \"order\"; filter = \"w1.amount > "
        "event.total\"; on_event = \"w2\"; },\n"
        "    { id = \"w2\"; type = \"wait_event\"; event = \"review\"; filter = \"w2.stars >= "
        "w1.items and w2.id != w1.id\"; on_event = \"c\"; },\n"
        "    { id = \"c\"; type = \"condition\";\n"
        "      branches = ( { when = \"w1.amount == 25 and w2.stars == 4 and event.total == 10 "
        "and event.type == 'cart' and w2.time > w1.time and w1.type == 'order'\"; next = "
        "\"ok\"; } );\n"
        "      otherwise = \"bad\"; },\n"
        "    { id = \"ok\"; type = \"end\"; },\n"
        "    { id = \"bad\"; type = \"end\"; }\n"
        "  ); };\n";
    const char *events = "{\"id\": \"1\", \"type\": \"cart\", \"profile\": \"p1\", \"time\": "
                         "\"2026-11-23T10:00:00Z\", \"data\": {\"total\": 10}}\n"
                         /* 5 is not above the entry's 10: still waiting */
                         "{\"id\": \"2\", \"type\": \"order\", \"profile\": \"p1\", \"time\": "
                         "\"2026-11-23T11:00:00Z\", \"data\": {\"amount\": 5, \"items\": 3}}\n"
                         "{\"id\": \"3\", \"type\": \"order\", \"profile\": \"p1\", \"time\": "
                         "\"2026-11-23T12:00:00Z\", \"data\": {\"amount\": 25, \"items\": 3}}\n"
                         /* 2 stars, fewer than the 3 items of the order w1 received */
                         "{\"id\": \"4\", \"type\": \"review\", \"profile\": \"p1\", \"time\": "
                         "\"2026-11-23T13:00:00Z\", \"data\": {\"stars\": 2}}\n"
                         "{\"id\": \"5\", \"type\": \"review\", \"profile\": \"p1\", \"time\": "
                         "\"2026-11-23T14:00:00Z\", \"data\": {\"stars\": 4}}\n"
                         /* p2: the entry's total is 30, so the order of 25 does not react */
                         "{\"id\": \"6\", \"type\": \"cart\", \"profile\": \"p2\", \"time\": "
                         "\"2026-11-23T10:00:00Z\", \"data\": {\"total\": 30}}\n"
                         "{\"id\": \"7\", \"type\": \"order\", \"profile\": \"p2\", \"time\": "
                         "\"2026-11-23T11:00:00Z\", \"data\": {\"amount\": 25, \"items\": 1}}\n";
    json_t *out = simulate(j, events, INT64_MAX, NULL);
    assert_path(out, "p1", "completed", "w1 w2 c ok");
    assert_path(out, "p2", "timed_out", "w1"); /* after the journey's 91 days */
    json_decref(out);
}

/* Local time: waits until 09:00 on each profile's wall clock
 * (profiles_timezone "tz"), the second one after that zone's daylight
 * saving change, then a send held until 18:30 local. Paris, New York and
 * Sydney (whose clocks go back), and a profile whose zone is unknown
 * (UTC, as is one without caps.quiet_hours). The simulated clock jumps
 * from timer to timer; the times are those the engine ran the nodes at. */
static json_t *tz_profile(void *ud, const char *id)
{
    const char *tz = !strcmp(id, "par")   ? "Europe/Paris"
                     : !strcmp(id, "nyc") ? "America/New_York"
                     : !strcmp(id, "syd") ? "Australia/Sydney"
                                          : "Mars/Olympus_Mons";
    return json_pack("{s:s, s:s}", "id", id, "tz", tz);
}

static char tz_log[4096];
static void tz_step(void *ud, const journey *j, const char *profile, const char *node, int64_t now)
{
    char ts[21];
    timestamp_format(now / 1000, ts);
    snprintf(tz_log + strlen(tz_log), sizeof tz_log - strlen(tz_log), "%s %s %s\n", profile, node,
             ts);
}

static int tz_send(void *ud, const jsend_req *r, char *status, size_t statuslen)
{
    tz_step(ud, r->j, r->profile, "sent", r->now_ms);
    snprintf(status, statuslen, "queued");
    return 0;
}

static void test_sim_local_time(void **st)
{
    const char *text =
        "journey: { name = \"tz\"; entry = { event = \"signup\"; };\n"
        "  start = \"w\"; nodes = (\n"
        "    { id = \"w\"; type = \"wait\"; until = \"next 09:00\"; local = true; next = \"d\"; "
        "},\n"
        "    { id = \"d\"; type = \"wait\"; wait = { until = \"next 09:00\"; local = true; }; next "
        "= "
        "\"m\"; },\n"
        "    { id = \"m\"; type = \"send\"; channel = \"push\"; title = \"Hi\"; local_time = "
        "\"18:30\"; next = \"u\"; },\n"
        "    { id = \"u\"; type = \"wait\"; until = \"next 09:00\"; next = \"e\"; },\n"
        "    { id = \"e\"; type = \"end\"; } ); };\n";
    const char *events =
        /* 08:30 CET; the clocks go forward on 2026-03-29 */
        EV("1", "signup", "par", "2026-03-28T07:30:00Z")
        /* 08:30 EST; forward on 2026-03-08 */
        EV("2", "signup", "nyc", "2026-03-07T13:30:00Z")
        /* 08:30 AEDT on 2026-04-04; back on 2026-04-05 */
        EV("3", "signup", "syd", "2026-04-03T21:30:00Z")
            EV("4", "signup", "mars", "2026-03-28T07:30:00Z");
    diag d;
    diag_init(&d);
    journey *j = load_text("tz.cfg", text, &d);
    if (!j) {
        diag_print(&d, stderr);
        fail_msg("journey did not load");
    }
    j->tz_field = strdup("tz"); /* profiles_timezone = "tz" */
    char *ev = file_write(dir, "events.jsonl", events);
    tz_log[0] = '\0';
    jengine_ops ops = {.profile = tz_profile, .step = tz_step, .send = tz_send};
    json_t *out = NULL;
    char err[256];
    assert_int_equal(journey_simulate(j, &ops, ev, INT64_MAX, &out, &d, err, sizeof err), 0);
    assert_path(out, "par", "completed", "w d m u e");
    /* each profile's lines in order (the log interleaves profiles) */
    static const char *const want[][7] = {
        {"par", "w 2026-03-28T07:30:00Z", "d 2026-03-28T08:00:00Z", "m 2026-03-29T07:00:00Z",
         "sent 2026-03-29T16:30:00Z", "u 2026-03-29T16:30:00Z", "e 2026-03-30T09:00:00Z"},
        {"nyc", "w 2026-03-07T13:30:00Z", "d 2026-03-07T14:00:00Z", "m 2026-03-08T13:00:00Z",
         "sent 2026-03-08T22:30:00Z", "u 2026-03-08T22:30:00Z", "e 2026-03-09T09:00:00Z"},
        {"syd", "w 2026-04-03T21:30:00Z", "d 2026-04-03T22:00:00Z", "m 2026-04-04T23:00:00Z",
         "sent 2026-04-05T08:30:00Z", "u 2026-04-05T08:30:00Z", "e 2026-04-05T09:00:00Z"},
        {"mars", "w 2026-03-28T07:30:00Z", "d 2026-03-28T09:00:00Z", "m 2026-03-29T09:00:00Z",
         "sent 2026-03-29T18:30:00Z", "u 2026-03-29T18:30:00Z", "e 2026-03-30T09:00:00Z"},
    };
    for (size_t p = 0; p < 4; p++) {
        char got[1024] = "", line[128];
        const char *s = tz_log;
        while (*s) {
            const char *nl = strchr(s, '\n');
            size_t n = (size_t)(nl - s);
            size_t pl = strlen(want[p][0]);
            if (n > pl && !strncmp(s, want[p][0], pl) && s[pl] == ' ') {
                snprintf(line, sizeof line, "%.*s", (int)(n - pl - 1), s + pl + 1);
                strcat(got, *got ? ", " : "");
                strcat(got, line);
            }
            s = nl + 1;
        }
        char exp[1024] = "";
        for (int k = 1; k < 7; k++) {
            strcat(exp, k > 1 ? ", " : "");
            strcat(exp, want[p][k]);
        }
        if (strcmp(got, exp))
            fail_msg("%s:\n  got      %s\n  expected %s", want[p][0], got, exp);
    }
    json_decref(out);
    free(ev);
    journey_free(j);
    diag_free(&d);
    const char *bad = "journey: { name = \"x\"; entry = { event = \"e\"; }; start = \"a\";\n"
                      " nodes = ( { id = \"a\"; type = \"wait\"; until = \"next 9am\"; next = "
                      "\"b\"; },\n"
                      " { id = \"b\"; type = \"wait\"; duration = \"1h\"; local = true; next = "
                      "\"c\"; },\n"
                      " { id = \"c\"; type = \"send\"; channel = \"push\"; local_time = \"25:00\"; "
                      "next = \"z\"; },\n"
                      " { id = \"z\"; type = \"end\"; } ); };\n";
    const char *const parts[] = {"2: node 'a': until = \"next 9am\": expected \"next HH:MM\"",
                                 "3: node 'b': local = true needs until = \"next HH:MM\"",
                                 "4: node 'c': local_time = \"25:00\" is not a time of day", NULL};
    expect_errors(bad, parts);
}

/* A name of a node's result is refused where no path from start passes
 * that node (before it, on another branch, in the entry filter). */
static void test_file_reads_undefined_result(void **st)
{
    const char *text =
        "journey: { name = \"x\";\n"                                /* 1 */
        "  entry = { event = \"e\"; filter = \"w.total > 1\"; };\n" /* 2 */
        "  start = \"c\";\n"                                        /* 3 */
        "  nodes = (\n"                                             /* 4 */
        "    { id = \"c\"; type = \"condition\";\n"                 /* 5 */
        "      branches = ( { when = \"w.total > 1\"; next = \"w\"; } ); otherwise = \"s\"; },\n"
        "    { id = \"w\"; type = \"wait_event\"; event = \"o\"; on_event = \"t\"; },\n" /* 7 */
        "    { id = \"s\"; type = \"send\"; channel = \"email\"; text = \"{{ w.total }}\"; "
        "next = \"e\"; },\n" /* 8 */
        "    { id = \"t\"; type = \"send\"; channel = \"email\"; text = \"{{ w.total }}\"; "
        "next = \"e\"; },\n" /* 9 */
        "    { id = \"e\"; type = \"end\"; }\n"
        "  ); };\n";
    const char *const parts[] = {
        "2: entry: filter: 'w.total' reads the event received by node 'w', which no instance",
        "6: node 'c': branches[0]: when: 'w.total' reads the event received by node 'w', but no "
        "path from start to node 'c' passes through 'w'",
        "8: node 's': text: 'w.total' reads the event received by node 'w', but no path", NULL};
    expect_errors(text, parts);
    diag d;
    diag_init(&d);
    journey *jj = load_text("bad.cfg", text, &d);
    char *all = messages(&d);
    if (strstr(all, "node 't'")) /* t comes after w: it may read w.* */
        fail_msg("node t refused:\n%s", all);
    free(all);
    journey_free(jj);
    diag_free(&d);
}

static void test_file_expression_errors(void **st)
{
    const char *text = "journey: { name = \"x\";\n"
                       "  entry = { event = \"e\"; filter = \"event.total >\"; };\n"
                       "  start = \"c\";\n"
                       "  nodes = (\n"
                       "    { id = \"c\"; type = \"condition\";\n"
                       "      branches = ( { when = \"event.total == null\"; next = \"s\"; } ); "
                       "otherwise = \"s\"; },\n"
                       "    { id = \"s\"; type = \"send\"; channel = \"email\"; subject = \"Hi {{ "
                       "event.name \"; next = \"e\"; },\n"
                       "    { id = \"e\"; type = \"end\"; }\n"
                       "  ); };\n";
    const char *const parts[] = {"2: entry: filter: 1:", "6: node 'c': branches[0]: when: 1:",
                                 "7: node 's': subject: 1:", NULL};
    expect_errors(text, parts);
}

/* With a configuration: the schema types profile.*, sources and actions
 * are known by name, channels too. */
static void test_file_against_configuration(void **st)
{
    const char *src = getenv("BATON_SRC");
    char cfg[2048];
    snprintf(
        cfg, sizeof cfg,
        "sources: { crm: { plugin = \"source_sqlite\"; path = \"crm.db\"; schema = "
        "\"%s/conf/schema.cfg\"; };\n"
        "  weather: { plugin = \"source_http\"; url = \"http://127.0.0.1:1/\"; }; };\n"
        "profiles = \"crm\";\n"
        "channels: { email: { plugin = \"channel_email\"; }; sms: { plugin = \"channel_sms\"; "
        "enabled = false; }; };\n"
        "actions: { loyalty: { plugin = \"action_http\"; url = \"http://127.0.0.1:1/\"; }; };\n",
        src ? src : ".");
    char *cpath = file_write(dir, "baton.cfg", cfg);
    diag d;
    diag_init(&d);
    app a;
    assert_int_equal(app_open(&a, cpath, 0, &d), 0);
    const char *good = "journey: { name = \"ok\"; entry = { event = \"e\"; filter = \"profile.tier "
                       "== 'gold' and weather.temperature < 5\"; };\n"
                       "  start = \"a\"; nodes = (\n"
                       "    { id = \"a\"; type = \"action\"; action = \"loyalty\"; next = \"c\"; "
                       "on_error = \"z\"; },\n"
                       "    { id = \"c\"; type = \"condition\"; branches = ( { when = \"a.points > "
                       "100\"; next = \"s\"; } ); otherwise = \"z\"; },\n"
                       "    { id = \"s\"; type = \"send\"; channel = \"sms\"; text = \"{{ "
                       "profile.first_name }}\"; next = \"z\"; },\n"
                       "    { id = \"z\"; type = \"end\"; } ); };\n";
    char *path = file_write(dir, "good.cfg", good);
    journey *j = journey_load(path, &a, &d);
    if (!j)
        diag_print(&d, stderr);
    assert_non_null(j);
    journey_free(j);
    free(path);
    const char *bad =
        "journey: { name = \"bad\"; entry = { event = \"e\"; filter = \"profile.tierr == 'gold'\"; "
        "};\n"
        "  start = \"a\"; nodes = (\n"
        "    { id = \"a\"; type = \"action\"; action = \"loyalti\"; next = \"c\"; },\n"
        "    { id = \"c\"; type = \"condition\"; branches = ( { when = \"wether.temperature < 5\"; "
        "next = \"s\"; } ); },\n"
        "    { id = \"s\"; type = \"send\"; channel = \"emial\"; text = \"x\"; next = \"z\"; },\n"
        "    { id = \"z\"; type = \"end\"; } ); };\n";
    path = file_write(dir, "bad.cfg", bad);
    assert_null(journey_load(path, &a, &d));
    char *all = messages(&d);
    const char *want[] = {
        "1: entry: filter: 1:1: unknown field 'tierr' in profiles",
        "(did you mean 'tier'?)",
        "3: node 'a': action = \"loyalti\" names no configured action (did you mean 'loyalty'?)",
        "4: node 'c': branches[0]: when: 1:1: unknown name 'wether'",
        "5: node 's': channel = \"emial\" names no configured channel (did you mean 'email'?)",
        NULL};
    for (const char *const *w = want; *w; w++)
        if (!strstr(all, *w))
            fail_msg("expected '%s' among:\n%s", *w, all);
    free(all);
    free(path);
    free(cpath);
    app_close(&a);
    diag_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_ok),
        cmocka_unit_test(test_event_defaults),
        cmocka_unit_test(test_event_text),
        cmocka_unit_test(test_event_read_object),
        cmocka_unit_test(test_inbox_prune),
        cmocka_unit_test(test_event_malformed),
        cmocka_unit_test(test_event_reader),
        cmocka_unit_test(test_timers_order),
        cmocka_unit_test(test_timers_model),
        cmocka_unit_test(test_file_ok),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_file_loop_without_wait),
        cmocka_unit_test(test_sim_paths),
        cmocka_unit_test(test_sim_disabled_channel),
        cmocka_unit_test(test_sim_duplicates_and_dead_letters),
        cmocka_unit_test(test_sim_reentry),
        cmocka_unit_test(test_sim_split_stable),
        cmocka_unit_test(test_sim_wait_event_without_timeout),
        cmocka_unit_test(test_sim_conditions),
        cmocka_unit_test(test_sim_reaction_data),
        cmocka_unit_test(test_sim_local_time),
        cmocka_unit_test(test_sim_lifecycle),
        cmocka_unit_test(test_file_reads_undefined_result),
        cmocka_unit_test(test_file_expression_errors),
        cmocka_unit_test(test_file_against_configuration),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
