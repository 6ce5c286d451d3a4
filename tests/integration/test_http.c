/* The HTTP face of `baton serve`, end to end with real clients (curl, and
 * Python's http.client through tests/support/http_probe.py) against a
 * real serve on a free port of 127.0.0.1: every endpoint and error code,
 * token scopes, the same JSON as the CLI, events committed before their
 * 202 (kill -9 or SIGTERM while clients post, restart: every answered
 * event is in the inbox), bodies over the limits, slow clients, a TLS
 * listener, SIGHUP with the server on (tokens and listener changed, a
 * broken configuration refused). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "support/fs.h"
#include "support/server.h"

#define INGEST "ingest-secret-0123456789abcdef"
#define OPS "ops-secret-0123456789abcdef0123"
#define ADMIN "admin-secret-0123456789abcdef01"
#define NEWTOK "new-secret-0123456789abcdef0123"

static char *dir;
static int port;
static pid_t baton;
static int tls; /* the next config listens with TLS */
static const char *extra_http = "";
static const char *extra_top = ""; /* more top-level settings */
static const char *ops_secret = "${env:T_OPS}";

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void write_config(void)
{
    char text[8192], certs[2048] = "";
    if (tls)
        snprintf(certs, sizeof certs, "tls_cert = \"%s/cert.pem\"; tls_key = \"%s/key.pem\";", dir,
                 dir);
    snprintf(
        text, sizeof text,
        "baton: { data_dir = \"var\"; plugin_path = [ \"%s\" ]; log = { level = \"info\"; }; };\n"
        "sources: { crm: { plugin = \"source_sqlite\"; path = \"var/crm.db\"; schema = "
        "\"%s/conf/schema.cfg\"; }; };\n"
        "profiles = \"crm\";\n"
        "channels: { mail: { plugin = \"channel_directmail\"; dir = \"var/exports\"; rate = 500; "
        "}; };\n%s\n"
        "campaigns = [ \"campaigns\" ];\n"
        "journeys = [ \"journeys\" ];\n"
        "http = { listen = \"127.0.0.1:%d\"; web_root = \"web\"; timeout = \"2s\"; body_timeout = "
        "\"3s\"; header_timeout = \"10s\"; connections_per_ip = 50; max_body = "
        "1048576; max_events = 500; %s %s\n"
        "  tokens = ( { name = \"ingest\"; secret = \"${env:T_INGEST}\"; scopes = [ "
        "\"events:write\" ]; },\n"
        "             { name = \"ops\"; secret = \"%s\"; scopes = [ \"read\", "
        "\"campaigns:run\" ]; },\n"
        "             { name = \"root\"; secret = \"" ADMIN "\"; scopes = [ \"admin\" ]; } ); };\n",
        getenv("BATON_PLUGINS"), getenv("BATON_SRC"), extra_top, port, certs, extra_http,
        ops_secret);
    free(file_write(dir, "baton.cfg", text));
}

static int curl_json(const char *method, const char *path, const char *token, const char *body,
                     json_t **out);

/* Until /readyz says so: the journeys and channels are up. */
static void wait_ready(void)
{
    for (int i = 0; i < 1000; i++) {
        if (server_port_open(port) && curl_json("GET", "/readyz", NULL, NULL, NULL) == 200)
            return;
        nap_ms(10);
    }
    fail_msg("baton serve does not listen on %d", port);
}

static void start_baton(void)
{
    baton = fork();
    if (baton == 0) {
        char log[1024];
        snprintf(log, sizeof log, "%s/baton.log", dir);
        freopen(log, "a", stdout);
        freopen(log, "a", stderr);
        if (chdir(dir) != 0)
            _exit(127);
        execl(getenv("BATON_BIN"), "baton", "-c", "baton.cfg", "serve", (char *)NULL);
        _exit(127);
    }
    wait_ready();
}

static void stop_baton(void)
{
    if (baton <= 0)
        return;
    kill(baton, SIGTERM);
    int st;
    for (int i = 0; i < 1000 && waitpid(baton, &st, WNOHANG) == 0; i++)
        nap_ms(10);
    if (waitpid(baton, &st, WNOHANG) == 0) {
        kill(baton, SIGKILL);
        waitpid(baton, &st, 0);
    }
    baton = 0;
}

static int setup(void **state)
{
    setenv("T_INGEST", INGEST, 1);
    setenv("T_OPS", OPS, 1);
    dir = tmpdir_make("http");
    char sub[1024];
    snprintf(sub, sizeof sub, "%s/campaigns", dir);
    mkdir(sub, 0755);
    snprintf(sub, sizeof sub, "%s/journeys", dir);
    mkdir(sub, 0755);
    snprintf(sub, sizeof sub, "%s/web", dir);
    mkdir(sub, 0755);
    snprintf(sub, sizeof sub, "%s/web/sub", dir);
    mkdir(sub, 0755);
    free(file_write(dir, "web/index.html", "<!doctype html><title>console</title>\n"));
    free(file_write(dir, "web/sub/app.js", "console.log(1);\n"));
    free(file_write(dir, "web/sub/.secret", "no\n"));
    free(file_write(dir, "outside.txt", "outside the web root\n"));
    char link[1024];
    snprintf(link, sizeof link, "%s/web/escape.txt", dir);
    symlink("../outside.txt", link);
    free(file_write(dir, "campaigns/gold.cfg",
                    "campaign: { name = \"gold\";\n  activities = (\n"
                    "    { id = \"g\"; type = \"build_audience\"; dimension = \"profiles\"; "
                    "filter = \"tier == 'gold'\"; },\n"
                    "    { id = \"out\"; type = \"send\"; channel = \"mail\"; input = \"g\"; "
                    "columns = [ \"id\" ]; }\n  ); };\n"));
    free(file_write(dir, "campaigns/promo.cfg",
                    "campaign: { name = \"promo\";\n"
                    "  parameters = ( { name = \"tier\"; type = \"string\"; default = "
                    "\"gold\"; },\n"
                    "                 { name = \"min\"; type = \"float\"; } );\n"
                    "  activities = (\n"
                    "    { id = \"g\"; type = \"build_audience\"; dimension = \"profiles\"; "
                    "filter = \"tier == param.tier and score > param.min and 'param.tier' != "
                    "tier\"; },\n"
                    "    { id = \"out\"; type = \"send\"; channel = \"mail\"; input = \"g\"; "
                    "columns = [ \"id\" ]; }\n  ); };\n"));
    free(file_write(dir, "journeys/order.cfg",
                    "journey: { name = \"thanks\"; entry = { event = \"order\"; reentry = "
                    "\"always\"; };\n  start = \"c\"; nodes = (\n"
                    "    { id = \"c\"; type = \"condition\"; branches = ( { when = \"event.total "
                    "> 0\"; next = \"done\"; } ); otherwise = \"done\"; },\n"
                    "    { id = \"done\"; type = \"end\"; } ); };\n"));
    port = server_free_port();
    write_config();
    char cfg[1024];
    snprintf(cfg, sizeof cfg, "%s/baton.cfg", dir);
    if (run_baton(NULL, cfg, NULL, NULL, "sample-data --profiles 300") != 0)
        return -1;
    start_baton();
    return 0;
}

static int teardown(void **state)
{
    stop_baton();
    if (!getenv("BATON_KEEP_TMP"))
        tmpdir_remove(dir);
    free(dir);
    return 0;
}

/* One request with curl: the status, and the body parsed into *out
 * (NULL when it is not JSON; may be NULL). hdrs: more -H options. */
static int curl_full(const char *method, const char *path, const char *token, const char *ctype,
                     const char *body, const char *hdrs, json_t **out, char **raw)
{
    char bodyf[1024], outf[1024], cmd[8192];
    snprintf(bodyf, sizeof bodyf, "%s/req.body", dir);
    snprintf(outf, sizeof outf, "%s/resp.body", dir);
    if (body)
        free(file_write(NULL, bodyf, body));
    char auth[256] = "", ct[256] = "";
    if (token)
        snprintf(auth, sizeof auth, "-H 'Authorization: Bearer %s'", token);
    if (ctype)
        snprintf(ct, sizeof ct, "-H 'Content-Type: %s'", ctype);
    snprintf(cmd, sizeof cmd,
             "curl -s %s -o %s -w '%%{http_code}' -X %s %s %s %s %s '%s://127.0.0.1:%d%s'",
             tls ? "--cacert cert.pem" : "", outf, method, auth, ct, hdrs ? hdrs : "",
             body ? "--data-binary @req.body" : "", tls ? "https" : "http", port, path);
    char *so = NULL;
    char full[9000];
    snprintf(full, sizeof full, "cd %s && %s", dir, cmd);
    run_capture(full, &so, NULL);
    int status = so ? atoi(so) : -1;
    free(so);
    size_t n;
    char *text = file_read(outf, &n);
    if (out)
        *out = text ? json_loads(text, 0, NULL) : NULL;
    if (raw)
        *raw = text;
    else
        free(text);
    unlink(outf);
    return status;
}

static int curl_json(const char *method, const char *path, const char *token, const char *body,
                     json_t **out)
{
    return curl_full(method, path, token, body ? "application/json" : NULL, body, NULL, out, NULL);
}

/* The error code of an error answer ("" when it is not one). */
static const char *err_code(json_t *o)
{
    const char *c = json_string_value(json_object_get(json_object_get(o, "error"), "code"));
    return c ? c : "";
}

static json_t *cli_json(const char *args)
{
    char cfg[1024];
    snprintf(cfg, sizeof cfg, "%s/baton.cfg", dir);
    char *out = NULL;
    run_baton(dir, cfg, &out, NULL, "%s", args);
    json_t *o = out ? json_loads(out, 0, NULL) : NULL;
    free(out);
    assert_non_null(o);
    return o;
}

static void test_health_and_auth(void **state)
{
    json_t *o;
    assert_int_equal(curl_json("GET", "/healthz", NULL, NULL, &o), 200);
    assert_string_equal(json_string_value(json_object_get(o, "status")), "ok");
    json_decref(o);
    assert_int_equal(curl_json("GET", "/readyz", NULL, NULL, &o), 200);
    assert_true(json_is_true(json_object_get(o, "ready")));
    json_decref(o);
    /* no token, a wrong one, a token without the scope */
    assert_int_equal(curl_json("GET", "/v1/journeys", NULL, NULL, &o), 401);
    assert_string_equal(err_code(o), "unauthorized");
    assert_non_null(json_object_get(json_object_get(o, "error"), "message"));
    assert_non_null(json_object_get(json_object_get(o, "error"), "details"));
    json_decref(o);
    assert_int_equal(curl_json("GET", "/v1/journeys", OPS "x", NULL, &o), 401);
    json_decref(o);
    assert_int_equal(curl_json("GET", "/v1/journeys", INGEST, NULL, &o), 403);
    assert_string_equal(err_code(o), "forbidden");
    json_decref(o);
    assert_int_equal(curl_json("POST", "/v1/events", OPS, "{}", &o), 403);
    json_decref(o);
    assert_int_equal(curl_json("POST", "/v1/campaigns/gold/runs", INGEST, "{}", &o), 403);
    json_decref(o);
    /* admin holds every scope */
    assert_int_equal(curl_json("GET", "/v1/journeys", ADMIN, NULL, &o), 200);
    json_decref(o);
    /* 404 and 405 */
    assert_int_equal(curl_json("GET", "/v1/nothing", OPS, NULL, &o), 404);
    assert_string_equal(err_code(o), "not_found");
    json_decref(o);
    assert_int_equal(curl_json("DELETE", "/v1/events", INGEST, NULL, &o), 405);
    assert_string_equal(err_code(o), "method_not_allowed");
    json_decref(o);
    char *raw = NULL;
    curl_full("PUT", "/v1/campaigns", OPS, NULL, NULL, "-i", NULL, &raw);
    assert_non_null(strstr(raw, "Allow: GET"));
    free(raw);
}

static void test_failed_logins_are_throttled(void **state)
{
    json_t *o;
    /* a client of its own address (127.0.0.2) so the others are not locked out */
    int seen429 = 0;
    for (int i = 0; i < 12; i++) {
        int st = curl_full("GET", "/v1/journeys", "guess-0123456789abcdef", NULL, NULL,
                           "--interface 127.0.0.2", &o, NULL);
        if (st == 429) {
            seen429 = 1;
            assert_string_equal(err_code(o), "too_many_requests");
        } else
            assert_int_equal(st, 401);
        json_decref(o);
    }
    assert_true(seen429);
    /* even the right token waits out the window from there; 127.0.0.1 does not */
    assert_int_equal(
        curl_full("GET", "/v1/journeys", OPS, NULL, NULL, "--interface 127.0.0.2", &o, NULL), 429);
    json_decref(o);
    assert_int_equal(curl_json("GET", "/v1/journeys", OPS, NULL, &o), 200);
    json_decref(o);
}

static void test_events(void **state)
{
    json_t *o;
    /* one event */
    assert_int_equal(curl_json("POST", "/v1/events", INGEST,
                               "{\"id\": \"h1\", \"type\": \"order\", \"profile\": \"p1\", "
                               "\"data\": {\"total\": 12}}",
                               &o),
                     202);
    assert_int_equal(json_integer_value(json_object_get(o, "accepted")), 1);
    json_decref(o);
    /* an array: a duplicate (the same event again: the same id with other
     * content is a dead letter), a new one, one dead-lettered with its reason */
    assert_int_equal(curl_json("POST", "/v1/events", INGEST,
                               "[{\"id\": \"h1\", \"type\": \"order\", \"profile\": \"p1\","
                               " \"data\": {\"total\": 12}},"
                               " {\"id\": \"h2\", \"type\": \"order\", \"profile\": \"p2\"},"
                               " {\"id\": \"h3\", \"profile\": \"p3\"}]",
                               &o),
                     202);
    assert_int_equal(json_integer_value(json_object_get(o, "accepted")), 1);
    assert_int_equal(json_integer_value(json_object_get(o, "duplicate")), 1);
    assert_int_equal(json_integer_value(json_object_get(o, "dead_lettered")), 1);
    json_t *r = json_object_get(o, "results");
    assert_int_equal(json_array_size(r), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(r, 0), "status")),
                        "duplicate");
    assert_string_equal(json_string_value(json_object_get(json_array_get(r, 1), "status")),
                        "accepted");
    assert_string_equal(json_string_value(json_object_get(json_array_get(r, 2), "status")),
                        "dead_lettered");
    assert_non_null(
        strstr(json_string_value(json_object_get(json_array_get(r, 2), "reason")), "type"));
    json_decref(o);
    /* NDJSON */
    assert_int_equal(curl_full("POST", "/v1/events", INGEST, "application/x-ndjson",
                               "{\"id\": \"n1\", \"type\": \"order\", \"profile\": \"p4\"}\n"
                               "{\"id\": \"n2\", \"type\": \"order\", \"profile\": \"p5\"}\n",
                               NULL, &o, NULL),
                     202);
    assert_int_equal(json_integer_value(json_object_get(o, "accepted")), 2);
    json_decref(o);
    /* malformed: 400 with the byte offset, nothing taken */
    assert_int_equal(curl_json("POST", "/v1/events", INGEST,
                               "{\"id\": \"m1\", \"type\": \"order\", \"profile\": \"p\"}\n"
                               "{\"id\": \"m2\", \"type\": ,}",
                               &o),
                     400);
    assert_string_equal(err_code(o), "bad_json");
    json_t *det = json_object_get(json_object_get(o, "error"), "details");
    assert_int_equal(json_integer_value(json_object_get(det, "offset")), 67);
    assert_int_equal(json_integer_value(json_object_get(det, "event")), 1);
    json_decref(o);
    /* in an array: the byte where a ',' or ']' was due, or the end */
    assert_int_equal(curl_json("POST", "/v1/events", INGEST,
                               "[{\"id\": \"k2\", \"type\": \"order\", \"profile\": \"p\"}"
                               " {\"id\": \"k3\", \"type\": \"order\", \"profile\": \"p\"}]",
                               &o),
                     400);
    assert_string_equal(err_code(o), "bad_json");
    det = json_object_get(json_object_get(o, "error"), "details");
    assert_int_equal(json_integer_value(json_object_get(det, "offset")), 47);
    json_decref(o);
    assert_int_equal(curl_json("POST", "/v1/events", INGEST,
                               "[{\"id\": \"k4\", \"type\": \"order\", \"profile\": \"p\"}", &o),
                     400);
    det = json_object_get(json_object_get(o, "error"), "details");
    assert_int_equal(json_integer_value(json_object_get(det, "offset")), 46);
    json_decref(o);
    /* a key twice is a dead letter, as from any source; its neighbour (a
     * type no journey enters) is taken */
    assert_int_equal(curl_json("POST", "/v1/events", INGEST,
                               "[{\"id\": \"k5\", \"type\": \"order\", \"profile\": \"p\","
                               " \"type\": \"cart\"}, {\"id\": \"k6\", \"type\": \"note\","
                               " \"profile\": \"p\"}]",
                               &o),
                     202);
    assert_int_equal(json_integer_value(json_object_get(o, "dead_lettered")), 1);
    assert_int_equal(json_integer_value(json_object_get(o, "accepted")), 1);
    r = json_object_get(o, "results");
    assert_string_equal(json_string_value(json_object_get(json_array_get(r, 0), "id")), "k5");
    assert_non_null(
        strstr(json_string_value(json_object_get(json_array_get(r, 0), "reason")), "duplicate"));
    json_decref(o);
    assert_int_equal(curl_json("POST", "/v1/events", INGEST, "", &o), 400);
    json_decref(o);
    /* 415 */
    assert_int_equal(curl_full("POST", "/v1/events", INGEST, "text/plain", "{}", NULL, &o, NULL),
                     415);
    assert_string_equal(err_code(o), "unsupported_media_type");
    json_decref(o);
    /* more events than max_events (500): 413, nothing taken */
    char *many = malloc(600 * 64 + 16);
    size_t n = 0;
    many[n++] = '[';
    for (int i = 0; i < 600; i++)
        n += (size_t)sprintf(many + n, "%s{\"id\":\"x%d\",\"type\":\"order\",\"profile\":\"p1\"}",
                             i ? "," : "", i);
    many[n++] = ']';
    many[n] = 0;
    assert_int_equal(curl_json("POST", "/v1/events", INGEST, many, &o), 413);
    assert_string_equal(err_code(o), "too_many_events");
    json_decref(o);
    free(many);
    char db[1024];
    snprintf(db, sizeof db, "%s/var/inbox.db", dir);
    sqlite3 *h;
    assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(h, 5000);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(h,
                                        "SELECT count(*), sum(id IN ('h1','h2','n1','n2')), "
                                        "sum(id LIKE 'x%' OR id LIKE 'm%') FROM journey_inbox",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 1), 4);
    assert_int_equal(sqlite3_column_int(st, 2), 0);
    sqlite3_finalize(st);
    sqlite3_close(h);
    /* the dead letter is listed */
    assert_int_equal(curl_json("GET", "/v1/dead_letters", OPS, NULL, &o), 200);
    assert_true(json_integer_value(json_object_get(o, "count")) >= 1);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(o, "latest"), 0), "source")),
                        "http");
    json_decref(o);
}

static void test_bodies_over_the_limit(void **state)
{
    char cmd[2048], *out = NULL;
    /* 100 MB announced: 413 at the headers, the body is not read */
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/support/http_probe.py big %d %s 100",
             getenv("BATON_SRC"), port, INGEST);
    assert_int_equal(run_capture(cmd, &out, NULL), 0);
    int status = 0;
    long long sent = 0;
    assert_int_equal(sscanf(out, "%d %lld", &status, &sent), 2);
    assert_int_equal(status, 413);
    assert_true(sent < 20LL * 1024 * 1024);
    free(out);
    /* chunked: the connection is closed once it goes over */
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/support/http_probe.py chunked %d %s 100",
             getenv("BATON_SRC"), port, INGEST);
    assert_int_equal(run_capture(cmd, &out, NULL), 0);
    char st[16];
    assert_int_equal(sscanf(out, "%15s %lld", st, &sent), 2);
    assert_string_equal(st, "none");
    assert_true(sent < 20LL * 1024 * 1024);
    free(out);
    json_t *o;
    assert_int_equal(curl_json("GET", "/healthz", NULL, NULL, &o), 200);
    json_decref(o);
}

/* Events in the inbox whose id starts with prefix. */
static long inbox_count(const char *prefix)
{
    char db[1024];
    snprintf(db, sizeof db, "%s/var/inbox.db", dir);
    sqlite3 *h;
    assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(h, 5000);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(h,
                                        "SELECT count(*) FROM journey_inbox WHERE substr(id, 1, "
                                        "length(?1)) = ?1",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, prefix, -1, SQLITE_TRANSIENT);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    long n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(h);
    return n;
}

/* The figure: 10,000 events in one request, over max_events
 * (500): 413 too_many_events, none of them taken. Then a 100 MB body from
 * curl (which asks Expect: 100-continue): 413 before it sends it. */
static void test_ten_thousand_events_and_curl_100mb(void **state)
{
    char *many = malloc(10000 * 64 + 16);
    size_t n = 0;
    many[n++] = '[';
    for (int i = 0; i < 10000; i++)
        n += (size_t)sprintf(many + n, "%s{\"id\":\"tt%d\",\"type\":\"order\",\"profile\":\"p1\"}",
                             i ? "," : "", i);
    many[n++] = ']';
    many[n] = 0;
    assert_true(n < 1048576); /* under max_body: the count refuses it */
    json_t *o;
    assert_int_equal(curl_json("POST", "/v1/events", INGEST, many, &o), 413);
    assert_string_equal(err_code(o), "too_many_events");
    json_decref(o);
    free(many);
    assert_int_equal(inbox_count("tt"), 0);
    /* a sparse file: 100 MB announced, no disk used */
    char cmd[2048], *out = NULL;
    snprintf(cmd, sizeof cmd,
             "cd %s && truncate -s 100M big.bin && curl -s -o /dev/null -w '%%{http_code} "
             "%%{size_upload}' -X POST -H 'Authorization: Bearer %s' -H 'Content-Type: "
             "application/json' -T big.bin 'http://127.0.0.1:%d/v1/events'; rm -f big.bin",
             dir, INGEST, port);
    assert_int_equal(run_capture(cmd, &out, NULL), 0);
    int status = 0;
    double sent = -1;
    assert_int_equal(sscanf(out, "%d %lf", &status, &sent), 2);
    free(out);
    assert_int_equal(status, 413);
    assert_true(sent >= 0 && sent < 20.0 * 1024 * 1024);
    assert_int_equal(curl_json("GET", "/healthz", NULL, NULL, &o), 200);
    json_decref(o);
}

/* Slowloris on the body: 20 clients trickle a byte every 0.5 s (never
 * idle for the 2 s timeout); others are answered meanwhile, and each
 * trickle is cut once body_timeout (3 s) has passed since its headers. */
static void test_trickled_bodies_are_cut(void **state)
{
    char cmd[2048], *out = NULL;
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/support/http_probe.py trickle %d %s 20",
             getenv("BATON_SRC"), port, INGEST);
    assert_int_equal(run_capture(cmd, &out, NULL), 0);
    int healthz = 0, events = 0, cut = -1, sent = -1;
    assert_int_equal(sscanf(out, "%d %d %d %d", &healthz, &events, &cut, &sent), 4);
    free(out);
    assert_int_equal(healthz, 200);
    assert_int_equal(events, 202);
    assert_int_equal(cut, 20);
    assert_true(sent < 100000);
    assert_int_equal(inbox_count("trickle-"), 1);
}

/* Slowloris on the headers, a byte every 0.5 s (never idle for the 2 s
 * timeout, never whole): the server cuts each connection (its 10 s
 * header_timeout), answering others all along and after. */
static void test_trickled_headers_are_cut(void **state)
{
    char cmd[2048], *out = NULL;
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/support/http_probe.py headers %d 10",
             getenv("BATON_SRC"), port);
    assert_int_equal(run_capture(cmd, &out, NULL), 0);
    int healthz = 0, cut = -1, sent = -1;
    if (sscanf(out, "%d %d %d", &healthz, &cut, &sent) != 3)
        fail_msg("http_probe headers: %s", out);
    free(out);
    assert_int_equal(healthz, 200);
    assert_int_equal(cut, 10);
    assert_true(sent > 4); /* it trickled past the idle timeout */
    json_t *o;
    assert_int_equal(curl_json("GET", "/healthz", NULL, NULL, &o), 200);
    json_decref(o);
}

/* Slowloris on the headers (a byte every 0.5 s, never idle, never
 * whole): one address holds connections_per_ip (50) connections at most;
 * its next is refused while another address is still answered. */
static void test_connections_per_ip(void **state)
{
    char cmd[2048], *out = NULL;
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/support/http_probe.py perip %d 50",
             getenv("BATON_SRC"), port);
    assert_int_equal(run_capture(cmd, &out, NULL), 0);
    char same[16] = "", other[16] = "";
    int alive = -1;
    assert_int_equal(sscanf(out, "%15s %15s %d", same, other, &alive), 3);
    free(out);
    assert_string_equal(same, "refused");
    assert_string_equal(other, "200");
    assert_int_equal(alive, 50);
    json_t *o;
    assert_int_equal(curl_json("GET", "/healthz", NULL, NULL, &o), 200);
    json_decref(o);
}

static void test_slow_clients(void **state)
{
    /* 40 clients that stall mid-headers; another is answered while they
     * hold, and the server cuts the stalled ones (its 2 s timeout) */
    char cmd[2048], *out = NULL;
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/support/http_probe.py slow %d 40 2",
             getenv("BATON_SRC"), port);
    assert_int_equal(run_capture(cmd, &out, NULL), 0);
    int status = -1, held = -1, cut = -1;
    if (sscanf(out, "%d %d %d", &status, &held, &cut) != 3)
        fail_msg("http_probe slow: %s", out);
    free(out);
    /* answered while all 40 stalled connections were held, and every one
     * of them then cut by the server, not by the client giving up */
    assert_int_equal(status, 200);
    assert_int_equal(held, 40);
    assert_int_equal(cut, 40);
}

static void test_reads_match_the_cli(void **state)
{
    json_t *o, *c;
    /* let the events of the previous test be routed */
    nap_ms(300);
    assert_int_equal(curl_json("GET", "/v1/journeys/thanks", OPS, NULL, &o), 200);
    c = cli_json("journey status thanks --json");
    assert_true(json_equal(o, c));
    json_decref(c);
    json_decref(o);
    assert_int_equal(curl_json("GET", "/v1/journeys", OPS, NULL, &o), 200);
    assert_int_equal(json_array_size(json_object_get(o, "journeys")), 1);
    json_decref(o);
    assert_int_equal(curl_json("GET", "/v1/journeys/nope", OPS, NULL, &o), 404);
    json_decref(o);
    assert_int_equal(curl_json("GET", "/v1/campaigns/gold/plan", OPS, NULL, &o), 200);
    c = cli_json("campaign plan gold --json");
    assert_true(json_equal(o, c));
    assert_true(json_integer_value(json_object_get(json_object_get(o, "counts"), "g")) > 0);
    json_decref(c);
    json_decref(o);
    assert_int_equal(curl_json("GET", "/v1/campaigns/nope/plan", OPS, NULL, &o), 404);
    json_decref(o);
    assert_int_equal(curl_json("GET", "/v1/campaigns/..%2Fbaton.cfg/plan", OPS, NULL, &o), 404);
    json_decref(o);
    assert_int_equal(curl_json("GET", "/v1/campaigns", OPS, NULL, &o), 200);
    json_t *g = json_array_get(json_object_get(o, "campaigns"), 0);
    assert_string_equal(json_string_value(json_object_get(g, "name")), "gold");
    assert_non_null(json_object_get(g, "state"));
    assert_non_null(json_object_get(g, "last_run"));
    json_decref(o);
    assert_int_equal(curl_json("GET", "/v1/profiles/p1", OPS, NULL, &o), 200);
    c = cli_json("profile p1 --json");
    assert_true(json_equal(o, c));
    assert_true(json_array_size(json_object_get(o, "journeys")) >= 1);
    json_decref(c);
    json_decref(o);
    assert_int_equal(curl_json("GET", "/v1/channels", OPS, NULL, &o), 200);
    g = json_array_get(json_object_get(o, "channels"), 0);
    assert_string_equal(json_string_value(json_object_get(g, "name")), "mail");
    assert_true(json_is_true(json_object_get(g, "on")));
    assert_int_equal(json_integer_value(json_object_get(g, "rate")), 500);
    assert_true(json_is_integer(json_object_get(g, "queue")));
    json_decref(o);
    assert_int_equal(curl_json("GET", "/v1/channels/mail", OPS, NULL, &o), 200);
    json_decref(o);
    assert_int_equal(curl_json("GET", "/v1/channels/sms", OPS, NULL, &o), 404);
    json_decref(o);
    assert_int_equal(curl_json("GET", "/v1/deliveries?status=bogus", OPS, NULL, &o), 400);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_object_get(o, "error"), "details"), "field")),
                        "status");
    json_decref(o);
    assert_int_equal(curl_json("GET", "/v1/deliveries?since=yesterday", OPS, NULL, &o), 400);
    json_decref(o);
    /* Python's http.client, keep-alive: two answers on one connection */
    char cmd[2048], *out = NULL;
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 %s/tests/support/http_probe.py get %d /v1/journeys %s",
             getenv("BATON_SRC"), port, OPS);
    assert_int_equal(run_capture(cmd, &out, NULL), 0);
    assert_true(!strncmp(out, "200 200\n", 8));
    o = json_loads(out + 8, 0, NULL);
    assert_non_null(json_object_get(o, "journeys"));
    json_decref(o);
    free(out);
}

/* POST /v1/journeys/NAME/pause|resume|close: campaigns:run (or admin);
 * the state the CLI reads; a paused journey holds its events until
 * resumed, a closed one takes no new entries. */
static long journey_profiles(void)
{
    json_t *o;
    assert_int_equal(curl_json("GET", "/v1/journeys/thanks", OPS, NULL, &o), 200);
    long n = (long)json_integer_value(json_object_get(o, "profiles"));
    json_decref(o);
    return n;
}

static const char *control_of(json_t *o)
{
    const char *c = json_string_value(json_object_get(o, "control"));
    return c ? c : "";
}

static void test_journey_control(void **state)
{
    json_t *o;
    assert_int_equal(curl_json("POST", "/v1/journeys/thanks/pause", INGEST, NULL, &o), 403);
    assert_string_equal(err_code(o), "forbidden");
    json_decref(o);
    assert_int_equal(curl_json("POST", "/v1/journeys/thanks/pause", NULL, NULL, &o), 401);
    json_decref(o);
    assert_int_equal(curl_json("POST", "/v1/journeys/nope/pause", OPS, NULL, &o), 404);
    assert_string_equal(err_code(o), "not_found");
    json_decref(o);
    assert_int_equal(curl_json("GET", "/v1/journeys/thanks/pause", OPS, NULL, &o), 405);
    json_decref(o);
    assert_int_equal(curl_json("POST", "/v1/journeys/thanks/pause", OPS, NULL, &o), 200);
    assert_string_equal(json_string_value(json_object_get(o, "journey")), "thanks");
    assert_string_equal(control_of(o), "paused");
    assert_string_equal(json_string_value(json_object_get(o, "was")), "running");
    json_decref(o);
    o = cli_json("journey status thanks --json");
    assert_string_equal(control_of(o), "paused");
    json_decref(o);
    nap_ms(1500); /* the engine reads the control within a second */
    long before = journey_profiles();
    assert_int_equal(curl_json("POST", "/v1/events", INGEST,
                               "{\"id\": \"ctl1\", \"type\": \"order\", \"profile\": "
                               "\"p7\", \"data\": {\"total\": 3}}",
                               &o),
                     202);
    json_decref(o);
    nap_ms(1500);
    assert_int_equal(journey_profiles(), before); /* held */
    /* resume: the held event enters */
    assert_int_equal(curl_json("POST", "/v1/journeys/thanks/resume", ADMIN, NULL, &o), 200);
    assert_string_equal(control_of(o), "running");
    assert_string_equal(json_string_value(json_object_get(o, "was")), "paused");
    json_decref(o);
    long now = before;
    for (int i = 0; i < 500 && (now = journey_profiles()) == before; i++)
        nap_ms(20);
    assert_true(now > before);
    /* close: no new entries */
    assert_int_equal(curl_json("POST", "/v1/journeys/thanks/close", OPS, NULL, &o), 200);
    assert_string_equal(control_of(o), "closed");
    json_decref(o);
    nap_ms(1500);
    before = journey_profiles();
    assert_int_equal(curl_json("POST", "/v1/events", INGEST,
                               "{\"id\": \"ctl2\", \"type\": \"order\", \"profile\": "
                               "\"p8\", \"data\": {\"total\": 3}}",
                               &o),
                     202);
    json_decref(o);
    nap_ms(1500);
    assert_int_equal(journey_profiles(), before);
    assert_int_equal(curl_json("GET", "/v1/journeys/thanks", OPS, NULL, &o), 200);
    assert_string_equal(control_of(o), "closed");
    json_decref(o);
    /* the later tests want it running */
    assert_int_equal(curl_json("POST", "/v1/journeys/thanks/resume", OPS, NULL, &o), 200);
    json_decref(o);
}

static void test_campaign_runs(void **state)
{
    json_t *o;
    assert_int_equal(
        curl_json("POST", "/v1/campaigns/gold/runs", OPS, "{\"parameters\": {\"x\": 1}}", &o), 400);
    assert_string_equal(err_code(o), "bad_parameters");
    json_decref(o);
    assert_int_equal(curl_json("POST", "/v1/campaigns/gold/runs", OPS, "{\"dry_run\": 3}", &o),
                     400);
    json_decref(o);
    assert_int_equal(curl_json("POST", "/v1/campaigns/gold/runs", OPS, "{\"bogus\": 1}", &o), 400);
    json_decref(o);
    assert_int_equal(curl_json("POST", "/v1/campaigns/nope/runs", OPS, "{}", &o), 404);
    json_decref(o);
    assert_int_equal(curl_json("POST", "/v1/campaigns/gold/runs", OPS, "{\"dry_run\": false}", &o),
                     202);
    json_int_t id = json_integer_value(json_object_get(o, "run"));
    assert_true(id > 0);
    json_decref(o);
    char path[256];
    snprintf(path, sizeof path, "/v1/campaigns/gold/runs/%lld", (long long)id);
    const char *status = "";
    for (int i = 0; i < 500; i++) {
        assert_int_equal(curl_json("GET", path, OPS, NULL, &o), 200);
        status = json_string_value(json_object_get(o, "status"));
        if (strcmp(status, "running"))
            break;
        json_decref(o);
        o = NULL;
        nap_ms(20);
    }
    assert_string_equal(status, "done");
    assert_string_equal(json_string_value(json_object_get(o, "trigger")), "http");
    json_t *acts = json_object_get(o, "activities");
    assert_int_equal(json_array_size(acts), 2);
    json_int_t sent = json_integer_value(json_object_get(json_array_get(acts, 1), "sent"));
    assert_true(sent > 0);
    json_decref(o);
    /* the same as `campaign runs --json` lists */
    assert_int_equal(curl_json("GET", "/v1/campaigns/gold/runs", OPS, NULL, &o), 200);
    json_t *c = cli_json("campaign runs gold --json");
    assert_true(json_equal(o, c));
    json_decref(c);
    json_decref(o);
    snprintf(path, sizeof path, "/v1/campaigns/gold/runs/%lld", (long long)id + 100);
    assert_int_equal(curl_json("GET", path, OPS, NULL, &o), 404);
    json_decref(o);
    assert_int_equal(curl_json("GET", "/v1/campaigns/gold/runs/abc", OPS, NULL, &o), 404);
    json_decref(o);
    /* the deliveries it made, paged */
    assert_int_equal(curl_json("GET", "/v1/deliveries?channel=mail&limit=5", OPS, NULL, &o), 200);
    assert_int_equal(json_array_size(json_object_get(o, "deliveries")), 5);
    const char *cur = json_string_value(json_object_get(o, "next_cursor"));
    assert_non_null(cur);
    char p2[256];
    snprintf(p2, sizeof p2, "/v1/deliveries?channel=mail&limit=5&cursor=%s", cur);
    const char *first = json_string_value(
        json_object_get(json_array_get(json_object_get(o, "deliveries"), 0), "key"));
    char firstkey[256];
    snprintf(firstkey, sizeof firstkey, "%s", first);
    json_decref(o);
    assert_int_equal(curl_json("GET", p2, OPS, NULL, &o), 200);
    assert_int_equal(json_array_size(json_object_get(o, "deliveries")), 5);
    assert_string_not_equal(json_string_value(json_object_get(
                                json_array_get(json_object_get(o, "deliveries"), 0), "key")),
                            firstkey);
    json_t *d0 = json_array_get(json_object_get(o, "deliveries"), 0);
    assert_string_equal(json_string_value(json_object_get(d0, "source")), "campaign");
    char prof[256];
    snprintf(prof, sizeof prof, "/v1/profiles/%s",
             json_string_value(json_object_get(d0, "profile")));
    json_decref(o);
    /* a profile's campaign deliveries are in its answer */
    assert_int_equal(curl_json("GET", prof, OPS, NULL, &o), 200);
    assert_true(json_array_size(json_object_get(o, "deliveries")) >= 1);
    json_decref(o);
}

/* POST runs with parameters: declared, typed, read as param.NAME. */
static void test_campaign_parameters(void **state)
{
    json_t *o;
    assert_int_equal(curl_json("POST", "/v1/campaigns/promo/runs", OPS,
                               "{\"parameters\": {\"tier\": 3, \"nope\": 1}}", &o),
                     400);
    assert_string_equal(err_code(o), "bad_parameters");
    json_t *det = json_object_get(json_object_get(o, "error"), "details");
    assert_string_equal(json_string_value(json_array_get(json_object_get(det, "unknown"), 0)),
                        "nope");
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(det, "mistyped"), 0), "name")),
                        "tier");
    assert_string_equal(json_string_value(json_array_get(json_object_get(det, "missing"), 0)),
                        "min");
    assert_non_null(
        strstr(json_string_value(json_object_get(json_object_get(o, "error"), "message")),
               "unknown nope"));
    json_decref(o);
    assert_int_equal(curl_json("POST", "/v1/campaigns/promo/runs", OPS,
                               "{\"parameters\": {\"tier\": \"silver\", \"min\": 0.5}}", &o),
                     202);
    json_int_t id = json_integer_value(json_object_get(o, "run"));
    json_decref(o);
    char path[256];
    snprintf(path, sizeof path, "/v1/campaigns/promo/runs/%lld", (long long)id);
    const char *status = "";
    for (int i = 0; i < 500; i++) {
        assert_int_equal(curl_json("GET", path, OPS, NULL, &o), 200);
        status = json_string_value(json_object_get(o, "status"));
        if (strcmp(status, "running"))
            break;
        json_decref(o);
        nap_ms(20);
    }
    assert_string_equal(status, "done");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(o, "parameters"), "tier")), "silver");
    json_int_t got = json_integer_value(json_object_get(
        json_object_get(json_array_get(json_object_get(o, "activities"), 0), "counts"), "g"));
    json_decref(o);
    char db[1024];
    snprintf(db, sizeof db, "%s/var/crm.db", dir);
    sqlite3 *h;
    assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(h,
                                        "SELECT count(*) FROM profiles WHERE tier = 'silver' AND "
                                        "score > 0.5",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    json_int_t want = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(h);
    assert_true(want > 0);
    assert_int_equal(got, want);
    /* the command line gives them too, typed as declared */
    char cfg[1024];
    snprintf(cfg, sizeof cfg, "%s/baton.cfg", dir);
    char *err = NULL;
    assert_int_equal(run_baton(dir, cfg, NULL, &err, "campaign run promo --param min=abc"), 2);
    assert_non_null(strstr(err, "mistyped"));
    free(err);
    assert_int_equal(
        run_baton(dir, cfg, NULL, NULL, "campaign run promo --param tier=silver --param min=0.5"),
        0);
    json_t *runs = cli_json("campaign runs promo --json");
    json_t *last = json_array_get(json_object_get(runs, "runs"), 0);
    assert_string_equal(json_string_value(json_object_get(last, "trigger")), "manual");
    assert_true(json_real_value(json_object_get(json_object_get(last, "parameters"), "min")) ==
                0.5);
    assert_int_equal(
        json_integer_value(json_object_get(
            json_object_get(json_array_get(json_object_get(last, "activities"), 0), "counts"),
            "g")),
        want);
    json_decref(runs);
}

/* GET a run until it is neither running nor waiting (or limit tries). */
static json_t *run_settled(const char *path)
{
    json_t *o = NULL;
    for (int i = 0; i < 500; i++) {
        json_decref(o);
        assert_int_equal(curl_json("GET", path, OPS, NULL, &o), 200);
        const char *status = json_string_value(json_object_get(o, "status"));
        if (strcmp(status, "running") && strcmp(status, "waiting"))
            break;
        nap_ms(20);
    }
    return o;
}

/* POST /v1/campaigns/NAME/runs/ID/signal: a run waiting at a signal goes
 * on at once, the signal's parameters read downstream; bad signals name
 * the run. */
static void test_campaign_signal(void **state)
{
    free(file_write(dir, "campaigns/launch.cfg",
                    "campaign: { name = \"launch\";\n"
                    "  parameters = ( { name = \"tier\"; type = \"string\"; default = \"gold\"; "
                    "} );\n"
                    "  activities = (\n"
                    "    { id = \"all\"; type = \"build_audience\"; dimension = \"profiles\"; },\n"
                    "    { id = \"go\"; type = \"signal\"; input = \"all\"; timeout = \"1d\"; },\n"
                    "    { id = \"t\"; type = \"split\"; input = \"go\"; branches = ( { name = "
                    "\"hit\"; filter = \"tier == param.tier\"; } ); },\n"
                    "    { id = \"out\"; type = \"send\"; channel = \"mail\"; input = \"t.hit\"; "
                    "columns = [ \"id\" ]; }\n  ); };\n"));
    json_t *o;
    assert_int_equal(curl_json("POST", "/v1/campaigns/launch/runs", OPS, "{}", &o), 202);
    json_int_t id = json_integer_value(json_object_get(o, "run"));
    json_decref(o);
    char path[256], sig[256];
    snprintf(path, sizeof path, "/v1/campaigns/launch/runs/%lld", (long long)id);
    snprintf(sig, sizeof sig, "/v1/campaigns/launch/runs/%lld/signal", (long long)id);
    for (int i = 0; i < 500; i++) {
        assert_int_equal(curl_json("GET", path, OPS, NULL, &o), 200);
        int waiting = !strcmp(json_string_value(json_object_get(o, "status")), "waiting");
        json_decref(o);
        if (waiting)
            break;
        nap_ms(20);
    }
    /* the scope is campaigns:run */
    assert_int_equal(curl_json("POST", sig, INGEST, "{}", &o), 403);
    json_decref(o);
    assert_int_equal(curl_json("POST", "/v1/campaigns/launch/runs/99999/signal", OPS, "{}", &o),
                     404);
    assert_string_equal(err_code(o), "not_found");
    json_decref(o);
    assert_int_equal(curl_json("POST", sig, OPS, "{\"parameters\": {\"tier\": 1}}", &o), 400);
    assert_string_equal(err_code(o), "bad_parameters");
    json_decref(o);
    assert_int_equal(curl_json("POST", sig, OPS, "{\"params\": {}}", &o), 400);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_object_get(o, "error"), "details"), "field")),
                        "params");
    json_decref(o);
    assert_int_equal(curl_json("POST", sig, OPS, "{\"parameters\": {\"tier\": \"silver\"}}", &o),
                     202);
    assert_int_equal(json_integer_value(json_object_get(o, "run")), id);
    assert_string_equal(json_string_value(json_array_get(json_object_get(o, "signaled"), 0)), "go");
    json_decref(o);
    o = run_settled(path);
    assert_string_equal(json_string_value(json_object_get(o, "status")), "done");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(o, "parameters"), "tier")), "silver");
    json_int_t hit = -1, sent = -1;
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(o, "activities"), i, a)
    {
        if (!strcmp(json_string_value(json_object_get(a, "id")), "t"))
            hit = json_integer_value(json_object_get(json_object_get(a, "counts"), "t.hit"));
        if (!strcmp(json_string_value(json_object_get(a, "id")), "out"))
            sent = json_integer_value(json_object_get(a, "sent"));
    }
    json_decref(o);
    char db[1024];
    snprintf(db, sizeof db, "%s/var/crm.db", dir);
    sqlite3 *h;
    assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(
        sqlite3_prepare_v2(h, "SELECT count(*) FROM profiles WHERE tier = 'silver'", -1, &st, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    json_int_t silver = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(h);
    assert_true(silver > 0);
    assert_int_equal(hit, silver); /* param.tier is the signal's */
    assert_int_equal(sent, silver);
    /* done: not waiting any more, 409 with the run */
    assert_int_equal(curl_json("POST", sig, OPS, "{}", &o), 409);
    assert_string_equal(err_code(o), "not_waiting");
    json_t *err = json_object_get(o, "error");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(err, "details"), "run")),
                     id);
    char want[160];
    snprintf(want, sizeof want, "run %lld of campaign launch is not waiting (it is done)",
             (long long)id);
    assert_non_null(strstr(json_string_value(json_object_get(err, "message")), want));
    json_decref(o);
}

static void test_static_files(void **state)
{
    char *raw = NULL;
    assert_int_equal(curl_full("GET", "/ui/", NULL, NULL, NULL, "-i", NULL, &raw), 200);
    assert_non_null(strstr(raw, "Content-Type: text/html; charset=utf-8"));
    assert_non_null(strstr(raw, "<title>console</title>"));
    free(raw);
    assert_int_equal(curl_full("GET", "/ui/sub/app.js", NULL, NULL, NULL, "-i", NULL, &raw), 200);
    assert_non_null(strstr(raw, "Content-Type: text/javascript"));
    free(raw);
    assert_int_equal(curl_full("GET", "/ui", NULL, NULL, NULL, "-i", NULL, &raw), 301);
    assert_non_null(strstr(raw, "Location: /ui/"));
    free(raw);
    json_t *o;
    /* no listing, no hidden files, no way out */
    assert_int_equal(curl_json("GET", "/ui/sub/", NULL, NULL, &o), 404);
    json_decref(o);
    assert_int_equal(curl_json("GET", "/ui/sub/.secret", NULL, NULL, &o), 404);
    json_decref(o);
    assert_int_equal(
        curl_full("GET", "/ui/../baton.cfg", NULL, NULL, NULL, "--path-as-is", &o, NULL), 404);
    json_decref(o);
    assert_int_equal(
        curl_full("GET", "/ui/%2e%2e/baton.cfg", NULL, NULL, NULL, "--path-as-is", &o, NULL), 404);
    json_decref(o);
    assert_int_equal(curl_json("GET", "/ui/escape.txt", NULL, NULL, &o), 404);
    json_decref(o);
    assert_int_equal(curl_json("POST", "/ui/", NULL, NULL, &o), 405);
    json_decref(o);
}

static void test_metrics(void **state)
{
    char *raw = NULL;
    assert_int_equal(curl_full("GET", "/metrics", OPS, NULL, NULL, "-i", NULL, &raw), 200);
    assert_non_null(strstr(raw, "Content-Type: text/plain; version=0.0.4"));
    assert_non_null(strstr(raw, "# TYPE baton_events_total counter"));
    assert_non_null(strstr(raw, "baton_events_total{source=\"http\",outcome=\"accepted\"}"));
    assert_non_null(strstr(raw, "baton_inbox_depth"));
    free(raw);
    json_t *o;
    assert_int_equal(curl_json("GET", "/metrics", INGEST, NULL, &o), 403);
    json_decref(o);
}

static void wait_log(const char *what, int from)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/baton.log", dir);
    for (int i = 0; i < 1000; i++) {
        size_t n;
        char *t = file_read(path, &n);
        int hit = t && (size_t)from < n && strstr(t + from, what);
        free(t);
        if (hit)
            return;
        nap_ms(10);
    }
    fail_msg("'%s' never appeared in baton.log", what);
}

static int log_size(void)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/baton.log", dir);
    struct stat st;
    return stat(path, &st) == 0 ? (int)st.st_size : 0;
}

static void test_sighup(void **state)
{
    json_t *o;
    /* a new token: the old one stops working, the new one works */
    ops_secret = NEWTOK;
    write_config();
    int at = log_size();
    kill(baton, SIGHUP);
    /* requests during the reload wait for it, never fail */
    assert_int_equal(curl_json("GET", "/healthz", NULL, NULL, &o), 200);
    json_decref(o);
    wait_log("reload done", at);
    assert_int_equal(curl_json("GET", "/v1/journeys", OPS, NULL, &o), 401);
    json_decref(o);
    assert_int_equal(curl_json("GET", "/v1/journeys", NEWTOK, NULL, &o), 200);
    json_decref(o);
    /* a broken configuration is refused: the server goes on as it was */
    char path[1024];
    snprintf(path, sizeof path, "%s/baton.cfg", dir);
    size_t n;
    char *good = file_read(path, &n);
    free(file_write(dir, "baton.cfg",
                    "http = { listen = \"127.0.0.1:1\"; tokens = ( { name = \"x\"; } ); };\n"));
    at = log_size();
    kill(baton, SIGHUP);
    wait_log("reload refused", at);
    assert_int_equal(curl_json("GET", "/v1/journeys", NEWTOK, NULL, &o), 200);
    json_decref(o);
    free(file_write(NULL, path, good));
    free(good);
    /* another port: the new one answers, the old one is closed */
    int old = port;
    port = server_free_port();
    write_config();
    at = log_size();
    kill(baton, SIGHUP);
    wait_log("reload done", at);
    assert_int_equal(curl_json("GET", "/v1/journeys", NEWTOK, NULL, &o), 200);
    json_decref(o);
    assert_false(server_port_open(old));
    ops_secret = "${env:T_OPS}";
    write_config();
    at = log_size();
    kill(baton, SIGHUP);
    wait_log("reload done", at);
}

/* The size of the file at path, or -1 when there is none. */
static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* GET /v1/journeys in the background: its status in waited-I, once
 * answered (headers in waited-I.h, body in waited-I.body). */
static void wait_in_background(int i)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "cd %s && (curl -s -D waited-%d.h -o waited-%d.body -w '%%{http_code}' -H "
             "'Authorization: Bearer %s' 'http://127.0.0.1:%d/v1/journeys' > waited-%d.tmp && mv "
             "waited-%d.tmp waited-%d) >/dev/null 2>&1 &",
             dir, i, i, OPS, port, i, i, i);
    assert_int_equal(system(cmd), 0);
}

/* The status of the background request i, waited for up to ms. */
static char *waited(int i, int ms)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/waited-%d", dir, i);
    for (int k = 0; k < ms / 10 && file_size(path) <= 0; k++)
        nap_ms(10);
    char *st = file_read(path, NULL);
    if (!st)
        fail_msg("background request %d: no answer", i);
    return st;
}

/* A reload that takes long (the old configuration's action call is in
 * flight: it finishes before the switch, held by the test's server):
 * its requests wait without holding a thread, so on a pool of one
 * thread /healthz is answered and /readyz says 503 (Retry-After) while
 * three requests wait; their wait ends at 30 s with 503 (Retry-After),
 * the reload still going; one more waits and is answered by the new
 * configuration once it is up. */
static void test_long_reload_answers(void **state)
{
    char script[1024], hooklog[1024];
    snprintf(script, sizeof script, "%s/tests/support/http_sink.py", getenv("BATON_SRC"));
    snprintf(hooklog, sizeof hooklog, "%s/hook.jsonl", dir);
    char *argv[] = {"/usr/bin/python3", script, "--hold", "hold", "--log", hooklog, NULL};
    test_server hook;
    assert_int_equal(server_start_ready(&hook, argv, 15000), 0);
    char top[512];
    snprintf(top, sizeof top,
             "actions: { slowhook: { plugin = \"action_http\"; url = \"http://127.0.0.1:%d/h\"; "
             "timeout = \"120s\"; body = \"{\\\"say\\\": \\\"hold\\\"}\"; }; };",
             hook.port);
    extra_top = top;
    extra_http = "threads = 1;";
    free(file_write(dir, "journeys/hook.cfg",
                    "journey: { name = \"hook\"; entry = { event = \"hook\"; };\n"
                    "  start = \"call\"; nodes = (\n"
                    "    { id = \"call\"; type = \"action\"; action = \"slowhook\"; next = "
                    "\"done\"; },\n"
                    "    { id = \"done\"; type = \"end\"; } ); };\n"));
    write_config();
    int at = log_size();
    kill(baton, SIGHUP);
    wait_log("reload done", at);
    json_t *o;
    char *pid = NULL;
    char q[1200];
    snprintf(q, sizeof q, "sqlite3 %s/var/crm.db 'SELECT id FROM profiles LIMIT 1'", dir);
    assert_int_equal(run_capture(q, &pid, NULL), 0);
    pid[strcspn(pid, "\n")] = 0;
    char ev[256];
    snprintf(ev, sizeof ev, "{\"id\": \"hook-1\", \"type\": \"hook\", \"profile\": \"%s\"}", pid);
    free(pid);
    assert_int_equal(curl_json("POST", "/v1/events", INGEST, ev, &o), 202);
    json_decref(o);
    /* the call is in flight, held */
    for (int i = 0; i < 1000 && file_size(hooklog) <= 0; i++)
        nap_ms(10);
    assert_true(file_size(hooklog) > 0);
    at = log_size();
    kill(baton, SIGHUP); /* waits for the call, which waits for us */
    wait_log("SIGHUP: re-reading", at);
    int ready = 0;
    for (int i = 0; i < 1000 && (ready = curl_json("GET", "/readyz", NULL, NULL, NULL)) != 503; i++)
        nap_ms(10);
    assert_int_equal(ready, 503);
    /* three requests that wait for the new configuration */
    char cmd[4096];
    for (int i = 0; i < 3; i++)
        wait_in_background(i);
    /* one connection each, parked (curl's own limit: longer than the 30 s
     * a request waits, so an answer at all says it was not stuck) */
    char *out = NULL, *hdrs = NULL;
    snprintf(cmd, sizeof cmd,
             "curl -s --max-time 60 -o /dev/null -w '%%{http_code}' "
             "'http://127.0.0.1:%d/healthz'",
             port);
    assert_int_equal(run_capture(cmd, &out, NULL), 0);
    assert_string_equal(out, "200");
    free(out);
    snprintf(cmd, sizeof cmd,
             "curl -s --max-time 60 -D - -o /dev/null 'http://127.0.0.1:%d/readyz'", port);
    assert_int_equal(run_capture(cmd, &hdrs, NULL), 0);
    if (!strstr(hdrs, " 503") || !strcasestr(hdrs, "\nRetry-After: "))
        fail_msg("/readyz during the reload: %s", hdrs);
    free(hdrs);
    /* still reloading: the call is held, nobody waiting was answered */
    char path[1024];
    snprintf(path, sizeof path, "%s/baton.log", dir);
    char *logt = file_read(path, NULL);
    assert_null(strstr(logt + at, "reload done"));
    free(logt);
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/waited-%d", dir, i);
        assert_true(file_size(path) < 0);
    }
    /* no configuration within 30 s: 503, Retry-After, the reload held */
    for (int i = 0; i < 3; i++) {
        char *st = waited(i, 60000);
        assert_string_equal(st, "503");
        free(st);
        snprintf(path, sizeof path, "%s/waited-%d.h", dir, i);
        char *h = file_read(path, NULL);
        if (!h || !strcasestr(h, "\nRetry-After: 5\r\n"))
            fail_msg("the 503 after the wait: %s", h ? h : "");
        free(h);
        snprintf(path, sizeof path, "%s/waited-%d.body", dir, i);
        size_t n;
        char *b = file_read(path, &n);
        json_t *e = b ? json_loadb(b, n, 0, NULL) : NULL;
        assert_string_equal(err_code(e), "unavailable");
        json_decref(e);
        free(b);
    }
    snprintf(path, sizeof path, "%s/baton.log", dir);
    logt = file_read(path, NULL);
    assert_null(strstr(logt + at, "reload done"));
    free(logt);
    /* one more waits; the call finishes: the reload ends, it is answered */
    wait_in_background(3);
    assert_int_equal(curl_json("GET", "/healthz", NULL, NULL, NULL), 200);
    snprintf(cmd, sizeof cmd, "curl -s -o /dev/null -X POST 'http://127.0.0.1:%d/_sink/release'",
             hook.port);
    assert_int_equal(run_capture(cmd, NULL, NULL), 0);
    wait_log("reload done", at);
    char *st = waited(3, 60000);
    assert_string_equal(st, "200");
    free(st);
    /* back to the configuration of the other tests */
    snprintf(path, sizeof path, "%s/journeys/hook.cfg", dir);
    unlink(path);
    extra_top = extra_http = "";
    write_config();
    at = log_size();
    kill(baton, SIGHUP);
    wait_log("reload done", at);
    server_stop(&hook);
}

static void test_tls(void **state)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "cd %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem "
             "-days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 2>/dev/null",
             dir);
    assert_int_equal(run_capture(cmd, NULL, NULL), 0);
    tls = 1;
    write_config();
    int at = log_size();
    kill(baton, SIGHUP); /* same port, now with TLS */
    wait_log("reload done", at);
    json_t *o;
    assert_int_equal(curl_json("GET", "/v1/journeys", OPS, NULL, &o), 200);
    assert_non_null(json_object_get(o, "journeys"));
    json_decref(o);
    assert_int_equal(curl_json("POST", "/v1/events", INGEST,
                               "{\"id\": \"t1\", \"type\": \"order\", \"profile\": \"p1\"}", &o),
                     202);
    json_decref(o);
    /* plain HTTP on the TLS port gets no answer */
    tls = 0;
    assert_true(curl_json("GET", "/healthz", NULL, NULL, &o) != 200);
    json_decref(o);
    write_config();
    at = log_size();
    kill(baton, SIGHUP);
    wait_log("reload done", at);
    assert_int_equal(curl_json("GET", "/healthz", NULL, NULL, &o), 200);
    json_decref(o);
}

/* Events posted while serve is killed: every one answered 202 is in the
 * inbox after the restart. */
/* How many of ids (one a line; the text is cut up) are not in the inbox. */
static long missing_from_inbox(char *ids)
{
    char db[1024];
    snprintf(db, sizeof db, "%s/var/inbox.db", dir);
    sqlite3 *h;
    assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(h, 5000);
    sqlite3_stmt *q;
    assert_int_equal(
        sqlite3_prepare_v2(h, "SELECT 1 FROM journey_inbox WHERE id = ?1", -1, &q, NULL),
        SQLITE_OK);
    long missing = 0;
    for (char *line = strtok(ids, "\n"); line; line = strtok(NULL, "\n")) {
        sqlite3_reset(q);
        sqlite3_bind_text(q, 1, line, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(q) != SQLITE_ROW)
            missing++;
    }
    sqlite3_finalize(q);
    sqlite3_close(h);
    return missing;
}

static void test_kill9_keeps_every_answered_event(void **state)
{
    char path[1024], acked[1024];
    snprintf(path, sizeof path, "%s/batches.jsonl", dir);
    snprintf(acked, sizeof acked, "%s/acked.txt", dir);
    FILE *f = fopen(path, "w");
    for (int b = 0; b < 2000; b++) {
        fputc('[', f);
        for (int i = 0; i < 20; i++)
            fprintf(f,
                    "%s{\"id\":\"k%d-%d\",\"type\":\"order\",\"profile\":\"p%d\",\"data\":{"
                    "\"total\":%d}}",
                    i ? "," : "", b, i, (b * 20 + i) % 300, i);
        fputs("]\n", f);
    }
    fclose(f);
    pid_t poster = fork();
    if (poster == 0) {
        char p[16];
        snprintf(p, sizeof p, "%d", port);
        char script[1024];
        snprintf(script, sizeof script, "%s/tests/support/http_probe.py", getenv("BATON_SRC"));
        execl("/usr/bin/python3", "python3", script, "post", p, INGEST, path, acked, (char *)NULL);
        _exit(127);
    }
    nap_ms(1500);
    kill(baton, SIGKILL);
    waitpid(baton, NULL, 0);
    baton = 0;
    int st;
    waitpid(poster, &st, 0);
    size_t n;
    char *ids = file_read(acked, &n);
    assert_non_null(ids);
    long count = 0;
    for (char *p = ids; *p; p++)
        count += *p == '\n';
    assert_true(count > 20);    /* some were answered */
    assert_true(count < 40000); /* and the kill came before the end */
    start_baton();
    long missing = missing_from_inbox(ids);
    free(ids);
    print_message("%ld events answered 202 before the kill; %ld missing after it\n", count,
                  missing);
    assert_int_equal(missing, 0);
}

/* SIGTERM while four clients post: serve answers what is in flight (202,
 * or 503 once the stop has begun), stops and exits 0, never left waiting
 * on a submit nobody commits; after a restart every event answered 202
 * is in the inbox. */
static void test_sigterm_keeps_every_answered_event(void **state)
{
    enum { P = 4 };
    pid_t poster[P];
    char acked[P][1024];
    for (int k = 0; k < P; k++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/term%d.jsonl", dir, k);
        snprintf(acked[k], sizeof acked[k], "%s/term%d.txt", dir, k);
        FILE *f = fopen(path, "w");
        for (int b = 0; b < 1000; b++) {
            fputc('[', f);
            for (int i = 0; i < 20; i++)
                fprintf(f, "%s{\"id\":\"t%d-%d-%d\",\"type\":\"order\",\"profile\":\"p%d\"}",
                        i ? "," : "", k, b, i, (b * 20 + i) % 300);
            fputs("]\n", f);
        }
        fclose(f);
        poster[k] = fork();
        if (poster[k] == 0) {
            char p[16];
            snprintf(p, sizeof p, "%d", port);
            char script[1024];
            snprintf(script, sizeof script, "%s/tests/support/http_probe.py", getenv("BATON_SRC"));
            execl("/usr/bin/python3", "python3", script, "post", p, INGEST, path, acked[k],
                  (char *)NULL);
            _exit(127);
        }
    }
    /* under way: each client has had answers */
    for (int k = 0; k < P; k++) {
        size_t n = 0;
        for (int i = 0; i < 3000 && n == 0; i++) {
            char *t = file_read(acked[k], &n);
            free(t);
            if (n == 0)
                nap_ms(10);
        }
        assert_true(n > 0);
    }
    kill(baton, SIGTERM);
    int st;
    assert_int_equal(waitpid(baton, &st, 0), baton);
    baton = 0;
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    for (int k = 0; k < P; k++)
        waitpid(poster[k], NULL, 0);
    start_baton();
    long count = 0, missing = 0;
    for (int k = 0; k < P; k++) {
        char *ids = file_read(acked[k], NULL);
        assert_non_null(ids);
        for (char *p = ids; *p; p++)
            count += *p == '\n';
        missing += missing_from_inbox(ids);
        free(ids);
    }
    print_message("%ld events answered 202 before the stop; %ld missing after it\n", count,
                  missing);
    assert_true(count < P * 20000); /* the stop came before the end */
    assert_int_equal(missing, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health_and_auth),
        cmocka_unit_test(test_failed_logins_are_throttled),
        cmocka_unit_test(test_events),
        cmocka_unit_test(test_bodies_over_the_limit),
        cmocka_unit_test(test_slow_clients),
        cmocka_unit_test(test_ten_thousand_events_and_curl_100mb),
        cmocka_unit_test(test_trickled_bodies_are_cut),
        cmocka_unit_test(test_trickled_headers_are_cut),
        cmocka_unit_test(test_connections_per_ip),
        cmocka_unit_test(test_reads_match_the_cli),
        cmocka_unit_test(test_journey_control),
        cmocka_unit_test(test_campaign_runs),
        cmocka_unit_test(test_campaign_parameters),
        cmocka_unit_test(test_campaign_signal),
        cmocka_unit_test(test_static_files),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_sighup),
        cmocka_unit_test(test_long_reload_answers),
        cmocka_unit_test(test_tls),
        cmocka_unit_test(test_kill9_keeps_every_answered_event),
        cmocka_unit_test(test_sigterm_keeps_every_answered_event),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
