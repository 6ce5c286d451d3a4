/* The web console's endpoints (daemon/http_console.c) against a real
 * baton serve on a free port of 127.0.0.1, with curl, on a copy of conf/
 * and its sample data: the token's scopes, a file's text and version, a
 * text checked (check's messages, naming the file), a save refused when
 * the check fails (422) or when the file changed since it was read (409
 * with the file's text; nothing lost), the version replaced kept and
 * restored, journey test on posted events (the CLI's answer), a channel
 * switched off in baton.cfg (comments kept) and applied by the running
 * serve, the key maps of the editor's forms, and bad requests. */
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
#include <time.h>
#include <unistd.h>

#include "support/fs.h"
#include "support/server.h"

#define OPS "ops-secret-0123456789abcdef0123"
#define VIEWER "viewer-secret-0123456789abcdef0"
#define INGEST "ingest-secret-0123456789abcdef0"

static char *dir;
static int port;
static pid_t baton;

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* curl: the status, *out the JSON answer (NULL when not JSON). */
static int api(const char *method, const char *path, const char *token, const char *body,
               json_t **out)
{
    char bf[1024] = "", cmd[4096];
    if (body) {
        snprintf(bf, sizeof bf, "%s/body.json", dir);
        FILE *f = fopen(bf, "w");
        assert_non_null(f);
        fputs(body, f);
        fclose(f);
    }
    snprintf(cmd, sizeof cmd,
             "curl -s -m 20 -o '%s/answer.json' -w '%%{http_code}' -X %s %s%s%s %s%s%s "
             "'http://127.0.0.1:%d%s'",
             dir, method, token ? "-H 'Authorization: Bearer " : "", token ? token : "",
             token ? "'" : "", body ? "-H 'Content-Type: application/json' --data-binary '@" : "",
             body ? bf : "", body ? "'" : "", port, path);
    char *o = NULL;
    run_capture(cmd, &o, NULL);
    int status = o ? atoi(o) : 0;
    free(o);
    if (out) {
        char p[1024];
        snprintf(p, sizeof p, "%s/answer.json", dir);
        *out = json_load_file(p, 0, NULL);
    }
    return status;
}

static const char *err_code(json_t *o)
{
    const char *c = json_string_value(json_object_get(json_object_get(o, "error"), "code"));
    return c ? c : "";
}

static void start_baton(void)
{
    baton = fork();
    if (baton == 0) {
        char log[1024];
        snprintf(log, sizeof log, "%s/baton.log", dir);
        freopen(log, "a", stdout);
        freopen(log, "a", stderr);
        execl(getenv("BATON_BIN"), "baton", "-c", "conf/baton.cfg", "serve", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 1500; i++) {
        if (server_port_open(port) && api("GET", "/readyz", NULL, NULL, NULL) == 200)
            return;
        nap_ms(10);
    }
    fail_msg("baton serve does not listen on %d", port);
}

static int setup(void **state)
{
    dir = tmpdir_make("http-console");
    port = server_free_port();
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "cp -r '%s/conf' '%s/conf' && rm -rf '%s/conf/var' && cd '%s/conf' && "
             "sed -i 's|plugin_path = \\[[^]]*\\];|plugin_path = [ \"%s\" ];|' baton.cfg && "
             "sed -i '/^events: {/,/^};/d' baton.cfg",
             getenv("BATON_SRC"), dir, dir, dir, getenv("BATON_PLUGINS"));
    assert_int_equal(run_capture(cmd, NULL, NULL), 0);
    char http[2048];
    snprintf(http, sizeof http,
             "\nhttp = { listen = \"127.0.0.1:%d\";\n"
             "  tokens = ( { name = \"ops\"; secret = \"" OPS "\"; scopes = [ \"read\", \"admin\" "
             "]; },\n"
             "             { name = \"viewer\"; secret = \"" VIEWER
             "\"; scopes = [ \"read\" ]; },\n"
             "             { name = \"ingest\"; secret = \"" INGEST "\"; scopes = [ "
             "\"events:write\" ]; } ); };\n",
             port);
    snprintf(cmd, sizeof cmd, "%s/conf/baton.cfg", dir);
    char *cfg = file_read(cmd, NULL);
    assert_non_null(cfg);
    size_t l = strlen(cfg) + strlen(http) + 1;
    char *all = malloc(l);
    snprintf(all, l, "%s%s", cfg, http);
    free(file_write(NULL, cmd, all));
    free(all);
    free(cfg);
    char *out = NULL, *err = NULL;
    snprintf(cmd, sizeof cmd, "%s/conf/baton.cfg", dir);
    assert_int_equal(run_baton(dir, cmd, &out, &err, "sample-data --profiles 200 --seed 3"), 0);
    free(out);
    free(err);
    if (chdir(dir) != 0)
        return -1;
    start_baton();
    return 0;
}

static int teardown(void **state)
{
    if (baton > 0) {
        kill(baton, SIGTERM);
        int st;
        waitpid(baton, &st, 0);
    }
    tmpdir_remove(dir);
    free(dir);
    return 0;
}

static void test_session_and_scopes(void **state)
{
    json_t *o;
    assert_int_equal(api("GET", "/v1/session", OPS, NULL, &o), 200);
    assert_string_equal(json_string_value(json_object_get(o, "name")), "ops");
    json_t *sc = json_object_get(o, "scopes");
    assert_int_equal(json_array_size(sc), 2);
    assert_string_equal(json_string_value(json_array_get(sc, 0)), "read");
    assert_string_equal(json_string_value(json_array_get(sc, 1)), "admin");
    json_decref(o);
    assert_int_equal(api("GET", "/v1/session", "nope", NULL, &o), 401);
    json_decref(o);
    /* reading is for read, writing for admin */
    assert_int_equal(api("PUT", "/v1/campaigns/winback/file", VIEWER,
                         "{\"text\": \"\", \"version\": \"x\"}", &o),
                     403);
    assert_string_equal(err_code(o), "forbidden");
    json_decref(o);
    assert_int_equal(api("PUT", "/v1/channels/email", VIEWER, "{\"enabled\": false}", &o), 403);
    json_decref(o);
}

static void test_file_check_save_restore(void **state)
{
    json_t *o;
    assert_int_equal(api("GET", "/v1/campaigns/winback/file", VIEWER, NULL, &o), 200);
    char *disk = file_read("conf/campaigns/winback.cfg", NULL);
    assert_string_equal(json_string_value(json_object_get(o, "text")), disk);
    char *version = strdup(json_string_value(json_object_get(o, "version")));
    assert_int_equal(strlen(version), 16);
    assert_non_null(strstr(json_string_value(json_object_get(o, "file")), "campaigns/winback.cfg"));
    json_decref(o);
    assert_int_equal(api("GET", "/v1/campaigns/nosuch/file", VIEWER, NULL, &o), 404);
    json_decref(o);

    /* a text with a typo: check's message, naming the real file and line */
    char *bad = strdup(disk);
    char *at = strstr(bad, "tier == 'gold'");
    assert_non_null(at);
    memcpy(at, "tirr", 4);
    json_t *req = json_pack("{s:s, s:s}", "text", bad, "version", version);
    char *body = json_dumps(req, 0);
    assert_int_equal(api("POST", "/v1/campaigns/winback/check", VIEWER, body, &o), 200);
    assert_false(json_is_true(json_object_get(o, "ok")));
    json_t *m = json_array_get(json_object_get(o, "messages"), 0);
    const char *msg = json_string_value(json_object_get(m, "message"));
    assert_non_null(strstr(msg, "campaigns/winback.cfg:11: filter: 1:1: unknown field 'tirr' in "
                                "profiles (did you mean 'tier'?)"));
    assert_null(strstr(msg, ".check-"));
    assert_int_equal(json_integer_value(json_object_get(m, "line")), 11);
    json_decref(o);
    /* saving it is refused, the file untouched */
    assert_int_equal(api("PUT", "/v1/campaigns/winback/file", OPS, body, &o), 422);
    assert_string_equal(err_code(o), "check_failed");
    json_decref(o);
    char *now = file_read("conf/campaigns/winback.cfg", NULL);
    assert_string_equal(now, disk);
    free(now);
    free(body);
    json_decref(req);

    /* a good change is saved, the old text kept as a version */
    char *good = strdup(disk);
    at = strstr(good, "tier == 'gold'");
    memcpy(at, "tier != 'gold'", 14);
    req = json_pack("{s:s, s:s}", "text", good, "version", version);
    body = json_dumps(req, 0);
    assert_int_equal(api("POST", "/v1/campaigns/winback/check", VIEWER, body, &o), 200);
    assert_true(json_is_true(json_object_get(o, "ok")));
    json_decref(o);
    assert_int_equal(api("PUT", "/v1/campaigns/winback/file", OPS, body, &o), 200);
    const char *nv = json_string_value(json_object_get(o, "version"));
    assert_non_null(nv);
    assert_string_not_equal(nv, version);
    char *v2 = strdup(nv);
    json_decref(o);
    now = file_read("conf/campaigns/winback.cfg", NULL);
    assert_string_equal(now, good);
    free(now);
    /* the same save again, from the old version: the file changed since,
     * so it is refused with the text on disk */
    assert_int_equal(api("PUT", "/v1/campaigns/winback/file", OPS, body, &o), 409);
    assert_string_equal(err_code(o), "conflict");
    json_t *det = json_object_get(json_object_get(o, "error"), "details");
    assert_string_equal(json_string_value(json_object_get(det, "current")), good);
    assert_string_equal(json_string_value(json_object_get(det, "version")), v2);
    json_decref(o);
    free(body);
    json_decref(req);

    /* the version list has the first text; restoring it brings it back */
    assert_int_equal(api("GET", "/v1/campaigns/winback/versions", VIEWER, NULL, &o), 200);
    json_t *vs = json_object_get(o, "versions");
    assert_int_equal(json_array_size(vs), 1);
    char path[512];
    snprintf(path, sizeof path, "/v1/campaigns/winback/versions/%s/restore",
             json_string_value(json_object_get(json_array_get(vs, 0), "id")));
    json_decref(o);
    assert_int_equal(api("POST", path, OPS, "{}", &o), 200);
    json_decref(o);
    now = file_read("conf/campaigns/winback.cfg", NULL);
    assert_string_equal(now, disk);
    free(now);
    assert_int_equal(
        api("POST", "/v1/campaigns/winback/versions/..%2F..%2Fx/restore", OPS, "{}", &o), 404);
    json_decref(o);
    /* the campaign's plan follows the file (plan opens it afresh) */
    assert_int_equal(api("GET", "/v1/campaigns/winback/plan", VIEWER, NULL, &o), 200);
    assert_true(json_integer_value(json_object_get(json_object_get(o, "counts"), "vip")) > 0);
    json_decref(o);
    free(v2);
    free(good);
    free(bad);
    free(disk);
    free(version);
}

static void test_bad_bodies(void **state)
{
    json_t *o;
    assert_int_equal(api("POST", "/v1/campaigns/winback/check", VIEWER, "{\"text\": ", &o), 400);
    assert_string_equal(err_code(o), "bad_request");
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_object_get(o, "error"), "details"), "offset")),
                     9);
    json_decref(o);
    assert_int_equal(api("POST", "/v1/campaigns/winback/check", VIEWER, "{\"text\": 3}", &o), 400);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_object_get(o, "error"), "details"), "field")),
                        "text");
    json_decref(o);
    assert_int_equal(api("PUT", "/v1/channels/email", OPS, "{\"enabled\": \"no\"}", &o), 400);
    json_decref(o);
    assert_int_equal(api("PUT", "/v1/channels/fax", OPS, "{\"enabled\": false}", &o), 404);
    json_decref(o);
}

static void test_journey_test_and_check(void **state)
{
    char *events = file_read("conf/events/demo.jsonl", NULL);
    assert_non_null(events);
    json_t *req = json_pack("{s:s}", "events", events);
    char *body = json_dumps(req, 0);
    json_t *o;
    assert_int_equal(api("POST", "/v1/journeys/cart-abandon/test", VIEWER, body, &o), 200);
    char *cli = NULL;
    assert_int_equal(run_baton(NULL, "conf/baton.cfg", &cli, NULL,
                               "journey test cart-abandon --events conf/events/demo.jsonl --json"),
                     0);
    json_t *want = json_loads(cli, 0, NULL);
    assert_non_null(want);
    assert_true(json_equal(json_object_get(o, "profiles"), json_object_get(want, "profiles")));
    json_decref(want);
    free(cli);
    json_decref(o);
    free(body);
    json_decref(req);
    /* an event that is not JSON is a dead letter, as in the CLI */
    assert_int_equal(
        api("POST", "/v1/journeys/cart-abandon/test", VIEWER, "{\"events\": \"not json\\n\"}", &o),
        200);
    assert_int_equal(json_integer_value(json_object_get(o, "dead_letters")), 1);
    json_decref(o);
    assert_int_equal(api("POST", "/v1/journeys/cart-abandon/test", VIEWER,
                         "{\"events\": \"\", \"until\": \"tomorrow\"}", &o),
                     400);
    json_decref(o);
    /* a journey text checked */
    char *j = file_read("conf/journeys/welcome.cfg", NULL);
    char *bad = strstr(j, "next = \"first_order\"");
    assert_non_null(bad);
    memcpy(bad, "next = \"first_ordr\" ", 20);
    req = json_pack("{s:s}", "text", j);
    body = json_dumps(req, 0);
    assert_int_equal(api("POST", "/v1/journeys/welcome/check", VIEWER, body, &o), 200);
    assert_false(json_is_true(json_object_get(o, "ok")));
    const char *msg = json_string_value(
        json_object_get(json_array_get(json_object_get(o, "messages"), 0), "message"));
    assert_non_null(strstr(msg, "journeys/welcome.cfg:"));
    assert_non_null(strstr(msg, "first_ordr"));
    json_decref(o);
    free(body);
    json_decref(req);
    free(j);
    free(events);
}

static void test_channel_switch(void **state)
{
    char *before = file_read("conf/baton.cfg", NULL);
    json_t *o;
    assert_int_equal(api("PUT", "/v1/channels/email", OPS, "{\"enabled\": false}", &o), 200);
    json_decref(o);
    char *after = file_read("conf/baton.cfg", NULL);
    char *at = strstr(after, "email: { enabled = false;");
    assert_non_null(at);
    /* nothing else changed, comments included */
    size_t head = (size_t)(at - after) + strlen("email: { enabled = ");
    assert_memory_equal(after, before, head);
    assert_int_equal(strncmp(before + head, "true;", 5), 0);
    assert_string_equal(after + head + 5, before + head + 4);
    free(after);
    /* serve applies it without a restart */
    int off = 0;
    for (int i = 0; i < 500 && !off; i++) {
        if (api("GET", "/v1/channels/email", VIEWER, NULL, &o) == 200)
            off = json_is_false(json_object_get(o, "enabled"));
        json_decref(o);
        if (!off)
            nap_ms(20);
    }
    assert_true(off);
    /* a sign-up now: the welcome journey's first node, on email, records
     * skipped, and the status counts it on that node; the first order then
     * is the wait_event's reaction */
    time_t now = time(NULL);
    char ev[512], ts[32];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    snprintf(ev, sizeof ev,
             "{\"id\": \"c-1\", \"type\": \"signed_up\", \"profile\": \"p5\", \"time\": "
             "\"%s\", \"data\": {}}\n{\"id\": \"c-2\", \"type\": \"order_placed\", \"profile\": "
             "\"p5\", \"time\": \"%s\", \"data\": {\"total\": 30}}",
             ts, ts);
    assert_int_equal(api("POST", "/v1/events", INGEST, ev, &o), 202);
    json_decref(o);
    json_t *hello = NULL, *first = NULL;
    for (int i = 0; i < 500; i++) {
        assert_int_equal(api("GET", "/v1/journeys/welcome", VIEWER, NULL, &o), 200);
        json_t *nodes = json_object_get(o, "nodes");
        if (json_integer_value(json_object_get(json_object_get(nodes, "first_order"), "reacted")) ==
            1) {
            hello = json_incref(json_object_get(nodes, "hello"));
            first = json_incref(json_object_get(nodes, "first_order"));
        }
        json_decref(o);
        if (hello)
            break;
        nap_ms(20);
    }
    assert_non_null(hello);
    assert_int_equal(json_integer_value(json_object_get(hello, "skipped")), 1);
    assert_int_equal(json_integer_value(json_object_get(hello, "sent")), 0);
    assert_int_equal(json_integer_value(json_object_get(hello, "through")), 1);
    assert_int_equal(json_integer_value(json_object_get(first, "timed_out")), 0);
    json_decref(hello);
    json_decref(first);
    /* the CLI reports the same */
    char *cli = NULL;
    assert_int_equal(run_baton(NULL, "conf/baton.cfg", &cli, NULL, "journey status welcome --json"),
                     0);
    json_t *js = json_loads(cli, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_object_get(js, "nodes"), "hello"), "skipped")),
                     1);
    json_decref(js);
    free(cli);
    /* the version of baton.cfg it replaced is kept */
    assert_int_equal(api("PUT", "/v1/channels/email", OPS, "{\"enabled\": true}", &o), 200);
    json_decref(o);
    after = file_read("conf/baton.cfg", NULL);
    assert_string_equal(after, before);
    free(after);
    free(before);
    assert_int_equal(system("ls conf/var/versions/config/baton.cfg/*.cfg >/dev/null"), 0);
}

static void test_describe(void **state)
{
    json_t *o;
    assert_int_equal(api("GET", "/v1/describe", VIEWER, NULL, &o), 200);
    json_t *ba = json_object_get(json_object_get(o, "activities"), "build_audience");
    assert_non_null(ba);
    json_t *k0 = json_array_get(json_object_get(ba, "keys"), 0);
    assert_string_equal(json_string_value(json_object_get(k0, "name")), "dimension");
    assert_true(json_is_true(json_object_get(k0, "required")));
    json_t *op = json_array_get(
        json_object_get(json_object_get(json_object_get(o, "activities"), "combine"), "keys"), 0);
    assert_int_equal(json_array_size(json_object_get(op, "choices")), 3);
    assert_non_null(json_object_get(json_object_get(o, "nodes"), "wait_event"));
    assert_non_null(json_object_get(json_object_get(o, "activities"), "send"));
    json_decref(o);
}

/* GET /v1/profiles?address=: the ids whose channel address fields (email
 * and phone in conf/) hold it, as the profiles table says */
static void test_profile_search(void **state)
{
    char *email = NULL, *phone = NULL, *want = NULL;
    assert_int_equal(run_capture("sqlite3 conf/var/crm.db \"SELECT email FROM profiles WHERE email"
                                 " IS NOT NULL ORDER BY id LIMIT 1 OFFSET 5\"",
                                 &email, NULL),
                     0);
    assert_int_equal(run_capture("sqlite3 conf/var/crm.db \"SELECT phone FROM profiles WHERE phone"
                                 " LIKE '+%' ORDER BY id LIMIT 1\"",
                                 &phone, NULL),
                     0);
    email[strcspn(email, "\n")] = 0;
    phone[strcspn(phone, "\n")] = 0;
    assert_true(*email && phone[0] == '+');
    char path[1024], cmd[1024];
    snprintf(cmd, sizeof cmd,
             "sqlite3 conf/var/crm.db \"SELECT id FROM profiles WHERE email = '%s' ORDER BY id\"",
             email);
    assert_int_equal(run_capture(cmd, &want, NULL), 0);
    json_t *o;
    snprintf(path, sizeof path, "/v1/profiles?address=%s", email);
    assert_int_equal(api("GET", path, VIEWER, NULL, &o), 200);
    json_t *ids = json_object_get(o, "profiles");
    assert_true(json_array_size(ids) >= 1);
    char got[512] = "";
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v)
    {
        strncat(got, json_string_value(v), sizeof got - strlen(got) - 2);
        strcat(got, "\n");
    }
    assert_string_equal(got, want);
    json_decref(o);
    /* a phone number, its '+' sent as %2B */
    snprintf(path, sizeof path, "/v1/profiles?address=%%2B%s", phone + 1);
    assert_int_equal(api("GET", path, VIEWER, NULL, &o), 200);
    assert_true(json_array_size(json_object_get(o, "profiles")) >= 1);
    snprintf(cmd, sizeof cmd,
             "sqlite3 conf/var/crm.db \"SELECT phone FROM profiles WHERE id = '%s'\"",
             json_string_value(json_array_get(json_object_get(o, "profiles"), 0)));
    json_decref(o);
    char *back = NULL;
    assert_int_equal(run_capture(cmd, &back, NULL), 0);
    back[strcspn(back, "\n")] = 0;
    assert_string_equal(back, phone);
    /* nobody, a quote (a bound parameter, not SQL), no address at all */
    assert_int_equal(api("GET", "/v1/profiles?address=x%27%20OR%201=1--", VIEWER, NULL, &o), 200);
    assert_int_equal(json_array_size(json_object_get(o, "profiles")), 0);
    json_decref(o);
    assert_int_equal(api("GET", "/v1/profiles", VIEWER, NULL, &o), 400);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_object_get(o, "error"), "details"), "field")),
                        "address");
    json_decref(o);
    assert_int_equal(api("GET", "/v1/profiles?address=a", INGEST, NULL, &o), 403);
    json_decref(o);
    free(email);
    free(phone);
    free(want);
    free(back);
}

/* POST /v1/campaigns/NAME/preview: each send's first messages rendered,
 * none delivered (the delivery log keeps its rows) */
static void test_campaign_preview(void **state)
{
    char *before = NULL, *after = NULL;
    const char *count = "sqlite3 conf/var/state.db \"SELECT count(*) FROM deliveries\" 2>/dev/null"
                        " || echo 0";
    run_capture(count, &before, NULL);
    json_t *o;
    assert_int_equal(api("POST", "/v1/campaigns/winback/preview", OPS, "{}", &o), 200);
    json_t *m = json_object_get(o, "messages");
    assert_true(json_array_size(m) >= 2 && json_array_size(m) <= 6);
    size_t i;
    json_t *v;
    json_array_foreach(m, i, v)
    {
        const char *act = json_string_value(json_object_get(v, "activity"));
        assert_true(!strcmp(act, "letter_a") || !strcmp(act, "letter_b"));
        assert_string_equal(json_string_value(json_object_get(v, "channel")), "mail");
        assert_non_null(
            json_string_value(json_object_get(json_object_get(v, "parts"), "first_name")));
        assert_true(json_string_value(json_object_get(v, "profile"))[0] == 'p');
    }
    json_decref(o);
    run_capture(count, &after, NULL);
    assert_string_equal(after, before);
    free(before);
    free(after);
    assert_int_equal(api("POST", "/v1/campaigns/winback/preview", OPS, "{\"proof\": []}", &o), 400);
    assert_string_equal(err_code(o), "bad_request");
    json_decref(o);
    assert_int_equal(api("POST", "/v1/campaigns/winback/preview", VIEWER, "{}", &o), 403);
    json_decref(o);
    assert_int_equal(api("POST", "/v1/campaigns/nope/preview", OPS, "{}", &o), 404);
    json_decref(o);
}

/* GET /v1/profiles/ID/record: the row, and per channel address, consent
 * and suppression (an address suppressed on every channel) */
static void test_profile_record(void **state)
{
    json_t *o;
    assert_int_equal(api("GET", "/v1/profiles/p3/record", VIEWER, NULL, &o), 200);
    json_t *f = json_object_get(o, "fields");
    const char *email = json_string_value(json_object_get(f, "email"));
    assert_non_null(email);
    char *want = NULL;
    assert_int_equal(
        run_capture("sqlite3 conf/var/crm.db \"SELECT email FROM profiles WHERE id = 'p3'\"", &want,
                    NULL),
        0);
    want[strcspn(want, "\n")] = 0;
    assert_string_equal(email, want);
    json_t *ch = json_array_get(json_object_get(o, "channels"), 0);
    assert_string_equal(json_string_value(json_object_get(ch, "channel")), "email");
    assert_string_equal(json_string_value(json_object_get(ch, "address")), want);
    assert_true(json_is_null(json_object_get(ch, "suppressed")));
    json_decref(o);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "sqlite3 conf/var/state.db \"CREATE TABLE IF NOT EXISTS suppressions (channel TEXT NOT"
             " NULL, kind TEXT NOT NULL, value TEXT NOT NULL, reason TEXT NOT NULL, source TEXT NOT"
             " NULL, created_at INTEGER NOT NULL, PRIMARY KEY (channel, kind, value)); INSERT INTO"
             " suppressions VALUES ('*', 'address', lower('%s'), 'hard bounce', 'test', 0)\"",
             want);
    assert_int_equal(run_capture(cmd, NULL, NULL), 0);
    assert_int_equal(api("GET", "/v1/profiles/p3/record", VIEWER, NULL, &o), 200);
    ch = json_array_get(json_object_get(o, "channels"), 0);
    assert_non_null(json_string_value(json_object_get(ch, "suppressed")));
    json_decref(o);
    assert_int_equal(api("GET", "/v1/profiles/nobody/record", VIEWER, NULL, &o), 200);
    assert_true(json_is_null(json_object_get(o, "fields")));
    json_decref(o);
    free(want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_session_and_scopes), cmocka_unit_test(test_file_check_save_restore),
        cmocka_unit_test(test_bad_bodies),         cmocka_unit_test(test_journey_test_and_check),
        cmocka_unit_test(test_channel_switch),     cmocka_unit_test(test_describe),
        cmocka_unit_test(test_profile_search),     cmocka_unit_test(test_campaign_preview),
        cmocka_unit_test(test_profile_record),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
