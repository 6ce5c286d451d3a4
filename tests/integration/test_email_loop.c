/* The email loop end to end: `baton serve` with an HTTP listener and an
 * email channel into a real SMTP sink (tests/support/smtp_sink.py).
 * A campaign's messages carry List-Unsubscribe: <PUBLIC_URL/u/TOKEN> and
 * List-Unsubscribe-Post (RFC 8058); GET /u/TOKEN shows a page and changes
 * nothing; forged, altered, cut, foreign-secret, other-purpose and
 * expired tokens are refused; POST /u/TOKEN (curl, and Python's
 * http.client) suppresses the profile, enters `unsubscribed` into a
 * journey, and a repeat changes nothing; the next campaign run and a
 * journey's send skip the profile (counted `suppressed`). */
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

#include "delivery/linktoken.h"
#include "support/fs.h"
#include "support/server.h"

#define LINK_SECRET "link-secret-0123456789abcdef-xyz"
#define INGEST "ingest-secret-0123456789abcdef"
#define OPS "ops-secret-0123456789abcdef0123"

static const char *bin, *src, *plugins;
static char *dir, *cfg;
static int port;
static pid_t baton;
static test_server smtp;

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static char *sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *sh(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char *out = NULL, *err = NULL;
    int rc = run_capture(cmd, &out, &err);
    if (rc != 0)
        fail_msg("%s: exit %d: %s", cmd, rc, err ? err : "");
    free(err);
    return out ? out : strdup("");
}

/* One request with curl: the status; the body in *body (may be NULL). */
static int curl(const char *method, const char *path, const char *hdrs, const char *data,
                char **body)
{
    char outf[1024];
    snprintf(outf, sizeof outf, "%s/resp.body", dir);
    char *so = sh("curl -s -o %s -w '%%{http_code}' -X %s %s %s%s%s 'http://127.0.0.1:%d%s'", outf,
                  method, hdrs ? hdrs : "", data ? "--data-binary '" : "", data ? data : "",
                  data ? "'" : "", port, path);
    int status = atoi(so);
    free(so);
    char *text = file_read(outf, NULL);
    if (body)
        *body = text;
    else
        free(text);
    unlink(outf);
    return status;
}

static json_t *curl_json(const char *method, const char *path, const char *hdrs, const char *data,
                         int *status)
{
    char *body = NULL;
    *status = curl(method, path, hdrs, data, &body);
    json_t *o = body ? json_loads(body, 0, NULL) : NULL;
    free(body);
    return o;
}

static const char *err_code(json_t *o)
{
    const char *c = json_string_value(json_object_get(json_object_get(o, "error"), "code"));
    return c ? c : "";
}

static long sink_count(void)
{
    char *n = sh("cat %s/smtp/log.jsonl 2>/dev/null | wc -l", dir);
    long v = atol(n);
    free(n);
    return v;
}

/* "rcpt|subject|List-Unsubscribe|List-Unsubscribe-Post" of every stored
 * message, one a line, in arrival order. */
static char *sink_headers(void)
{
    return sh("/usr/bin/python3 -c \"import email, json\n"
              "for l in open('%s/smtp/log.jsonl'):\n"
              "    e = json.loads(l)\n"
              "    m = email.message_from_bytes(open('%s/smtp/' + e['file'], 'rb').read())\n"
              "    print('|'.join([e['rcpt_tos'][0], str(m['Subject']), "
              "str(m['List-Unsubscribe']), str(m['List-Unsubscribe-Post'])]))\"",
              dir, dir);
}

static long suppressions(void)
{
    char *n = sh("sqlite3 %s/var/state.db 'SELECT count(*) FROM suppressions'", dir);
    long v = atol(n);
    free(n);
    return v;
}

static json_t *cli_json(const char *args)
{
    char *out = NULL, *err = NULL;
    int rc = run_baton(dir, cfg, &out, &err, "%s", args);
    if (rc != 0)
        fail_msg("baton %s: exit %d: %s", args, rc, err ? err : "");
    json_t *o = out ? json_loads(out, 0, NULL) : NULL;
    free(out);
    free(err);
    assert_non_null(o);
    return o;
}

static void run_campaign(void)
{
    char *out = NULL, *err = NULL;
    int rc = run_baton(dir, cfg, &out, &err, "campaign run news");
    if (rc != 0)
        fail_msg("campaign run: exit %d: %s%s", rc, out ? out : "", err ? err : "");
    free(out);
    free(err);
}

static int setup(void **st)
{
    bin = getenv("BATON_BIN");
    src = getenv("BATON_SRC");
    plugins = getenv("BATON_PLUGINS");
    if (!bin || !src || !plugins)
        return -1;
    setenv("T_LINK", LINK_SECRET, 1);
    setenv("T_INGEST", INGEST, 1);
    setenv("T_OPS", OPS, 1);
    dir = tmpdir_make("email-loop");
    free(sh("mkdir -p %s/var %s/campaigns %s/journeys %s/smtp && sqlite3 %s/var/crm.db \""
            "CREATE TABLE profiles (id TEXT PRIMARY KEY, email TEXT, phone TEXT, first_name TEXT,"
            " city TEXT, tier TEXT, birth_date TEXT, created_at TEXT, consent_email INTEGER,"
            " consent_sms INTEGER, consent_push INTEGER, score REAL);"
            "CREATE TABLE stores (id TEXT PRIMARY KEY, city TEXT, name TEXT);"
            "CREATE TABLE orders (id TEXT PRIMARY KEY, profile_id TEXT, store_id TEXT,"
            " amount REAL, created_at TEXT);"
            "CREATE TABLE reservations (id TEXT PRIMARY KEY, profile_id TEXT, store_id TEXT,"
            " starts_at TEXT, party INTEGER, status TEXT);"
            "INSERT INTO profiles (id, email, first_name, consent_email) VALUES"
            " ('p1', 'ann@example.com', 'Ann', 1), ('p2', 'bob@example.com', 'Bob', 1),"
            " ('p3', 'cy@example.com', 'Cy', 1);\"",
            dir, dir, dir, dir, dir));
    char sinkdir[1024];
    snprintf(sinkdir, sizeof sinkdir, "%s/smtp", dir);
    char script[1024];
    snprintf(script, sizeof script, "%s/tests/support/smtp_sink.py", src);
    char *argv[] = {"/usr/bin/python3", script, "--dir", sinkdir, NULL};
    if (server_start_ready(&smtp, argv, 15000) != 0)
        return -1;
    free(file_write(dir, "campaigns/news.cfg",
                    "campaign: { name = \"news\"; activities = (\n"
                    "  { id = \"all\"; type = \"build_audience\"; dimension = \"profiles\"; "
                    "filter = \"consent_email\"; },\n"
                    "  { id = \"m\"; type = \"send\"; channel = \"email\"; input = \"all\";\n"
                    "    subject = \"News\"; text = \"Hello {{ first_name }}\"; } ); };\n"));
    free(file_write(dir, "journeys/watch.cfg",
                    "journey: { name = \"watch\"; entry = { event = \"unsubscribed\"; };\n"
                    "  start = \"done\"; nodes = ( { id = \"done\"; type = \"end\"; } ); };\n"));
    free(file_write(dir, "journeys/bounced.cfg",
                    "journey: { name = \"bounced\"; entry = { event = \"email_bounced\"; };\n"
                    "  start = \"done\"; nodes = ( { id = \"done\"; type = \"end\"; } ); };\n"));
    free(file_write(dir, "journeys/thanks.cfg",
                    "journey: { name = \"thanks\"; entry = { event = \"order\"; };\n"
                    "  start = \"mail\"; nodes = (\n"
                    "    { id = \"mail\"; type = \"send\"; channel = \"email\"; subject = "
                    "\"Thanks\"; text = \"Thank you\"; next = \"done\"; },\n"
                    "    { id = \"done\"; type = \"end\"; } ); };\n"));
    port = server_free_port();
    char *text;
    if (asprintf(
            &text,
            "baton: { data_dir = \"var\"; plugin_path = [ \"%s\" ]; log = { level = \"info\"; "
            "}; };\n"
            "sources: { crm: { plugin = \"source_sqlite\"; path = \"var/crm.db\"; schema = "
            "\"%s/conf/schema.cfg\"; }; };\n"
            "profiles = \"crm\";\n"
            "channels: { email: { plugin = \"channel_email\"; port = %d; from = \"Shop "
            "<news@example.com>\"; address = \"email\"; consent = \"consent_email\"; }; };\n"
            "campaigns = [ \"campaigns\" ];\n"
            "journeys = [ \"journeys\" ];\n"
            "http = { listen = \"127.0.0.1:%d\"; public_url = \"https://news.example.test/\";\n"
            "  link_secret = \"${env:T_LINK}\";\n"
            "  tokens = ( { name = \"ingest\"; secret = \"${env:T_INGEST}\"; scopes = [ "
            "\"events:write\" ]; },\n"
            "             { name = \"ops\"; secret = \"${env:T_OPS}\"; scopes = [ \"read\" "
            "]; } );\n"
            "  feedback = ( { name = \"esp\"; type = \"event\"; address = \"email\"; "
            "reason = \"why\"; key = \"args.key\"; message_id = \"smtp-id\";\n"
            "                 hard = [ \"bounce\" ]; soft = [ \"deferred\" ]; complaint = [ "
            "\"spamreport\" ]; } ); };\n",
            plugins, src, smtp.port, port) < 0)
        abort();
    cfg = file_write(dir, "baton.cfg", text);
    free(text);
    baton = fork();
    if (baton == 0) {
        char log[1024];
        snprintf(log, sizeof log, "%s/baton.log", dir);
        freopen(log, "a", stdout);
        freopen(log, "a", stderr);
        if (chdir(dir) != 0)
            _exit(127);
        execl(bin, "baton", "-c", "baton.cfg", "serve", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 1000; i++) {
        if (server_port_open(port) && curl("GET", "/readyz", NULL, NULL, NULL) == 200)
            return 0;
        nap_ms(10);
    }
    return -1;
}

static int teardown(void **st)
{
    if (baton > 0) {
        kill(baton, SIGTERM);
        int s;
        waitpid(baton, &s, 0);
    }
    server_stop(&smtp);
    if (!getenv("BATON_KEEP_TMP"))
        tmpdir_remove(dir);
    free(dir);
    free(cfg);
    return 0;
}

/* The token in ann's first message's List-Unsubscribe. */
static char ann_token[LINKTOKEN_MAX];

static void test_campaign_mail_carries_the_link(void **st)
{
    run_campaign();
    assert_int_equal(sink_count(), 3);
    char *h = sink_headers();
    const char *prefix = "<https://news.example.test/u/";
    int seen = 0;
    for (char *line = strtok(h, "\n"); line; line = strtok(NULL, "\n")) {
        char *f[4] = {0};
        f[0] = line;
        for (int i = 1; i < 4; i++) {
            f[i] = strchr(f[i - 1], '|');
            assert_non_null(f[i]);
            *f[i]++ = 0;
        }
        assert_string_equal(f[1], "News");
        assert_string_equal(f[3], "List-Unsubscribe=One-Click");
        assert_memory_equal(f[2], prefix, strlen(prefix));
        size_t n = strlen(f[2]);
        assert_int_equal(f[2][n - 1], '>');
        char tok[LINKTOKEN_MAX];
        snprintf(tok, sizeof tok, "%.*s", (int)(n - 1 - strlen(prefix)), f[2] + strlen(prefix));
        /* each link names its own profile, signed with the configured secret */
        static linktoken_parsed p;
        assert_int_equal(
            linktoken_verify(tok, strlen(tok), LINK_SECRET, LINK_UNSUBSCRIBE, time(NULL), &p),
            LINKTOKEN_OK);
        assert_string_equal(p.t.channel, "email");
        assert_string_equal(p.t.origin, "campaign");
        assert_string_equal(p.t.name, "news");
        assert_string_equal(p.t.node, "m");
        if (!strcmp(f[0], "ann@example.com")) {
            assert_string_equal(p.t.profile, "p1");
            snprintf(ann_token, sizeof ann_token, "%s", tok);
        }
        seen++;
    }
    assert_int_equal(seen, 3);
    assert_true(ann_token[0]);
    free(h);
}

static void test_get_shows_a_page_and_changes_nothing(void **st)
{
    char path[LINKTOKEN_MAX + 8], *body = NULL;
    snprintf(path, sizeof path, "/u/%s", ann_token);
    assert_int_equal(curl("GET", path, "-H 'Accept: text/html'", NULL, &body), 200);
    assert_non_null(strstr(body, "<form method=\"post\">"));
    assert_non_null(strstr(body, "name=\"List-Unsubscribe\" value=\"One-Click\""));
    free(body);
    /* a link scanner's HEAD or GET, twice: still nothing recorded */
    assert_int_equal(curl("GET", path, NULL, NULL, NULL), 200);
    assert_int_equal(curl("HEAD", path, "-I", NULL, NULL), 200);
    assert_int_equal(suppressions(), 0);
}

static void expect_refused(const char *tok, int want, const char *code)
{
    char path[LINKTOKEN_MAX + 8];
    snprintf(path, sizeof path, "/u/%s", tok);
    int status;
    json_t *o = curl_json("POST", path, "-H 'Content-Type: application/x-www-form-urlencoded'",
                          "List-Unsubscribe=One-Click", &status);
    assert_int_equal(status, want);
    assert_string_equal(err_code(o), code);
    json_decref(o);
    char *body = NULL;
    assert_int_equal(curl("GET", path, "-H 'Accept: text/html'", NULL, &body), want);
    assert_non_null(strstr(body, "does not work"));
    free(body);
}

static void test_forged_and_replayed_tokens_refused(void **st)
{
    char t[LINKTOKEN_MAX];
    size_t n = strlen(ann_token);
    /* one character changed in the payload, then in the signature */
    snprintf(t, sizeof t, "%s", ann_token);
    t[3] = t[3] == 'A' ? 'B' : 'A';
    expect_refused(t, 403, "invalid_link");
    snprintf(t, sizeof t, "%s", ann_token);
    t[n - 2] = t[n - 2] == 'A' ? 'B' : 'A';
    expect_refused(t, 403, "invalid_link");
    /* cut short */
    snprintf(t, sizeof t, "%.*s", (int)(n - 3), ann_token);
    expect_refused(t, 403, "invalid_link");
    snprintf(t, sizeof t, "%.*s", (int)(strchr(ann_token, '.') - ann_token), ann_token);
    expect_refused(t, 403, "invalid_link");
    buf b;
    buf_init(&b);
    /* the same fields signed under a secret not ours */
    linktoken lt = {.purpose = LINK_UNSUBSCRIBE,
                    .profile = "p2",
                    .channel = "email",
                    .origin = "campaign",
                    .name = "news",
                    .node = "m"};
    assert_int_equal(linktoken_make(&lt, "not-the-secret-0123456789", &b), 0);
    expect_refused(b.data, 403, "invalid_link");
    /* a genuine token of an open pixel replayed as an unsubscribe */
    buf_reset(&b);
    lt.purpose = LINK_OPEN;
    assert_int_equal(linktoken_make(&lt, LINK_SECRET, &b), 0);
    expect_refused(b.data, 403, "invalid_link");
    /* a genuine unsubscribe token past its expiry */
    buf_reset(&b);
    lt.purpose = LINK_UNSUBSCRIBE;
    lt.expires = time(NULL) - 10;
    assert_int_equal(linktoken_make(&lt, LINK_SECRET, &b), 0);
    expect_refused(b.data, 410, "link_expired");
    buf_free(&b);
    assert_int_equal(suppressions(), 0);
}

static void test_one_click_post(void **st)
{
    char path[LINKTOKEN_MAX + 8];
    snprintf(path, sizeof path, "/u/%s", ann_token);
    int status;
    json_t *o = curl_json("POST", path, "-H 'Content-Type: application/x-www-form-urlencoded'",
                          "List-Unsubscribe=One-Click", &status);
    assert_int_equal(status, 200);
    assert_true(json_is_true(json_object_get(o, "unsubscribed")));
    assert_true(json_is_false(json_object_get(o, "already")));
    assert_string_equal(json_string_value(json_object_get(o, "profile")), "p1");
    assert_string_equal(json_string_value(json_object_get(o, "event")), "accepted");
    json_decref(o);
    assert_int_equal(suppressions(), 1);
    /* a provider posting again (Python's http.client): nothing more */
    char *py =
        sh("/usr/bin/python3 -c \"import http.client\n"
           "c = http.client.HTTPConnection('127.0.0.1', %d, timeout=10)\n"
           "c.request('POST', '%s', body='List-Unsubscribe=One-Click', headers={'Content-Type': "
           "'application/x-www-form-urlencoded'})\n"
           "r = c.getresponse()\n"
           "print(r.status, r.read().decode())\"",
           port, path);
    assert_int_equal(atoi(py), 200);
    o = json_loads(strchr(py, ' ') + 1, 0, NULL);
    assert_true(json_is_true(json_object_get(o, "already")));
    json_decref(o);
    free(py);
    assert_int_equal(suppressions(), 1);
    /* the event entered the journey that waits for it, once */
    json_t *js = NULL;
    for (int i = 0; i < 500; i++) {
        json_decref(js);
        js = cli_json("journey status watch --json");
        char *s = json_dumps(js, JSON_COMPACT);
        int entered = strstr(s, "\"completed\":1") != NULL;
        free(s);
        if (entered)
            break;
        nap_ms(20);
    }
    char *s = json_dumps(js, JSON_COMPACT);
    if (!strstr(s, "\"completed\":1"))
        fail_msg("the unsubscribed event did not complete the journey once: %s", s);
    free(s);
    json_decref(js);
}

static void test_suppressed_profile_gets_nothing_more(void **st)
{
    run_campaign();
    assert_int_equal(sink_count(), 5);
    char *h = sink_headers();
    int ann = 0;
    for (char *p = h; (p = strstr(p, "ann@example.com")); p++)
        ann++;
    assert_int_equal(ann, 1);
    free(h);
    json_t *runs = cli_json("campaign runs news --json");
    json_t *last = json_array_get(json_object_get(runs, "runs"), 0);
    json_t *acts = json_object_get(last, "activities"), *a;
    size_t i;
    int found = 0;
    json_array_foreach(acts, i, a)
    {
        if (strcmp(json_string_value(json_object_get(a, "id")), "m"))
            continue;
        assert_int_equal(json_integer_value(json_object_get(a, "suppressed")), 1);
        assert_int_equal(json_integer_value(json_object_get(a, "sent")), 2);
        found = 1;
    }
    assert_true(found);
    json_decref(runs);
    /* a journey's send honours it too */
    int status;
    char hdr[256];
    snprintf(hdr, sizeof hdr, "-H 'Authorization: Bearer %s' -H 'Content-Type: application/json'",
             INGEST);
    json_t *o = curl_json("POST", "/v1/events", hdr,
                          "[{\"id\": \"o1\", \"type\": \"order\", \"profile\": \"p1\"},"
                          " {\"id\": \"o2\", \"type\": \"order\", \"profile\": \"p2\"}]",
                          &status);
    assert_int_equal(status, 202);
    json_decref(o);
    for (int k = 0; k < 1000 && sink_count() < 6; k++)
        nap_ms(10);
    assert_int_equal(sink_count(), 6);
    json_t *prof = NULL;
    char *ps = NULL;
    for (int k = 0; k < 500; k++) {
        json_decref(prof);
        free(ps);
        prof = cli_json("profile p1 --json");
        ps = json_dumps(prof, JSON_COMPACT);
        if (strstr(ps, "skipped: suppressed"))
            break;
        nap_ms(20);
    }
    if (!strstr(ps, "skipped: suppressed"))
        fail_msg("p1's journey send is not skipped as suppressed: %s", ps);
    free(ps);
    json_decref(prof);
    h = sink_headers();
    assert_non_null(strstr(h, "bob@example.com|Thanks"));
    assert_null(strstr(h, "ann@example.com|Thanks"));
    free(h);
}

/* A column of the latest delivery to addr whose key starts with prefix. */
static char *delivery(const char *col, const char *addr, const char *prefix)
{
    char *v = sh("sqlite3 %s/var/state.db \"SELECT %s FROM deliveries WHERE recipient = '%s' AND "
                 "key LIKE '%s%%' ORDER BY rowid DESC LIMIT 1\"",
                 dir, col, addr, prefix);
    v[strcspn(v, "\n")] = 0;
    return v;
}

static json_t *feedback(const char *provider, const char *auth, const char *ctype, const char *body,
                        int *status)
{
    char path[128], hdr[512];
    snprintf(path, sizeof path, "/v1/feedback/%s", provider);
    snprintf(hdr, sizeof hdr, "%s -H 'Content-Type: %s'", auth, ctype);
    char *f = file_write(dir, "fb.body", body);
    char data[1100];
    snprintf(data, sizeof data, "@%s", f);
    free(f);
    json_t *o = curl_json("POST", path, hdr, data, status);
    return o;
}

static char ingest_bearer[128], ingest_basic[128], ops_bearer[128];

static void test_feedback_auth_and_errors(void **st)
{
    snprintf(ingest_bearer, sizeof ingest_bearer, "-H 'Authorization: Bearer %s'", INGEST);
    snprintf(ingest_basic, sizeof ingest_basic, "-u 'sns:%s'", INGEST);
    snprintf(ops_bearer, sizeof ops_bearer, "-H 'Authorization: Bearer %s'", OPS);
    int status;
    json_t *o = feedback("ses", "", "text/plain", "{}", &status);
    assert_int_equal(status, 401);
    json_decref(o);
    o = feedback("ses", ops_bearer, "text/plain", "{}", &status);
    assert_int_equal(status, 403);
    json_decref(o);
    o = feedback("nosuch", ingest_bearer, "application/json", "{}", &status);
    assert_int_equal(status, 404);
    assert_string_equal(err_code(o), "not_found");
    json_decref(o);
    /* SNS: malformed, a field missing, a Message that is not JSON */
    o = feedback("ses", ingest_basic, "text/plain", "{\"Type\": \"Notification\",, }", &status);
    assert_int_equal(status, 400);
    assert_string_equal(err_code(o), "bad_json");
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_object_get(o, "error"), "details"), "offset")),
                     24);
    json_decref(o);
    o = feedback("ses", ingest_basic, "text/plain",
                 "{\"Type\": \"Notification\", \"MessageId\": \"m1\", \"Message\": \"{}\"}",
                 &status);
    assert_int_equal(status, 400);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_object_get(o, "error"), "details"), "field")),
                        "TopicArn");
    json_decref(o);
    o = feedback("ses", ingest_basic, "text/plain",
                 "{\"Type\": \"Notification\", \"MessageId\": \"m1\", \"TopicArn\": \"arn:t\", "
                 "\"Message\": \"{nope\"}",
                 &status);
    assert_int_equal(status, 400);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_object_get(o, "error"), "details"), "field")),
                        "Message");
    json_decref(o);
    /* the subscription is logged for the operator, nothing fetched */
    o = feedback("ses", ingest_basic, "text/plain",
                 "{\"Type\": \"SubscriptionConfirmation\", \"MessageId\": \"m0\", \"TopicArn\": "
                 "\"arn:aws:sns:eu-west-1:1:bounces\", \"Token\": \"t\", \"SubscribeURL\": "
                 "\"https://sns.example.invalid/?Action=ConfirmSubscription&Token=t\"}",
                 &status);
    assert_int_equal(status, 200);
    assert_string_equal(json_string_value(json_object_get(o, "sns")), "SubscriptionConfirmation");
    json_decref(o);
    char *log = sh("grep -c 'ConfirmSubscription&Token=t' %s/baton.log", dir);
    assert_true(atoi(log) >= 1);
    free(log);
    /* a mapping's item without its address */
    o = feedback("esp", ingest_bearer, "application/json", "[{\"event\": \"bounce\"}]", &status);
    assert_int_equal(status, 400);
    json_t *d = json_object_get(json_object_get(o, "error"), "details");
    assert_string_equal(json_string_value(json_object_get(d, "field")), "email");
    assert_int_equal(json_integer_value(json_object_get(d, "item")), 0);
    json_decref(o);
    /* a DSN whose recipient group lacks Final-Recipient: the group's offset */
    const char *nofr = "From: MAILER-DAEMON@mx.example\nContent-Type: multipart/report;\n"
                       " report-type=delivery-status; boundary=zz\n\n--zz\n"
                       "Content-Type: message/delivery-status\n\nReporting-MTA: dns; mx\n\n"
                       "Action: failed\nStatus: 5.1.1\n\n--zz--\n";
    o = feedback("dsn", ingest_bearer, "message/rfc822", nofr, &status);
    assert_int_equal(status, 400);
    assert_string_equal(err_code(o), "bad_dsn");
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_object_get(o, "error"), "details"), "offset")),
                     strstr(nofr, "Action:") - nofr);
    json_decref(o);
    /* LF line ends, a folded Content-Type, a delayed (soft) and a failed
     * (hard) recipient, one report */
    o = feedback("dsn", ingest_bearer, "message/rfc822",
                 "From: MAILER-DAEMON@mx.example\nContent-Type: multipart/report;\n"
                 "\treport-type=delivery-status; boundary=\"zz\"\n\n--zz\n"
                 "Content-Type: message/delivery-status\n\nReporting-MTA: dns; mx\n\n"
                 "Final-Recipient: rfc822;dan@example.com\nAction: delayed\nStatus: 4.2.2\n\n"
                 "Final-Recipient: rfc822; fay@example.com\nAction: failed\nStatus: 5.1.1\n"
                 "\n--zz--\n",
                 &status);
    assert_int_equal(status, 200);
    json_t *res = json_object_get(o, "results");
    assert_int_equal(json_array_size(res), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(res, 0), "type")),
                        "soft_bounce");
    assert_string_equal(json_string_value(json_object_get(json_array_get(res, 0), "address")),
                        "dan@example.com");
    assert_string_equal(json_string_value(json_object_get(json_array_get(res, 1), "type")),
                        "hard_bounce");
    json_decref(o);
    /* a DSN that is not one */
    o = feedback("dsn", ingest_bearer, "message/rfc822",
                 "From: a@b\nContent-Type: text/plain\n\nhello\n", &status);
    assert_int_equal(status, 400);
    assert_string_equal(err_code(o), "bad_dsn");
    json_decref(o);
}

static void test_bounces_and_complaints(void **st)
{
    int status;
    /* SES: bob's latest campaign message bounced for good */
    char *bob_key = delivery("key", "bob@example.com", "news/");
    char body[4096];
    snprintf(body, sizeof body,
             "{\"Type\": \"Notification\", \"MessageId\": \"n1\", \"TopicArn\": \"arn:t\", "
             "\"Message\": \"{\\\"notificationType\\\": \\\"Bounce\\\", \\\"bounce\\\": "
             "{\\\"bounceType\\\": \\\"Permanent\\\", \\\"bouncedRecipients\\\": "
             "[{\\\"emailAddress\\\": \\\"bob@example.com\\\", \\\"diagnosticCode\\\": \\\"smtp; "
             "550 5.1.1 user unknown\\\"}]}, \\\"mail\\\": {\\\"messageId\\\": \\\"ses-1\\\", "
             "\\\"headers\\\": [{\\\"name\\\": \\\"X-Baton-Key\\\", \\\"value\\\": "
             "\\\"%s\\\"}]}}\"}",
             bob_key);
    json_t *o = feedback("ses", ingest_basic, "text/plain; charset=UTF-8", body, &status);
    assert_int_equal(status, 200);
    assert_int_equal(json_integer_value(json_object_get(o, "matched")), 1);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "events"), "accepted")),
                     1);
    json_decref(o);
    char *v = delivery("status || '|' || reason", "bob@example.com", bob_key);
    assert_string_equal(v, "bounced|bounced: smtp; 550 5.1.1 user unknown");
    free(v);
    /* Postmark: a soft bounce of cy's is recorded, nothing suppressed */
    char *cy_key = delivery("key", "cy@example.com", "news/");
    long before = suppressions();
    o = feedback("postmark", ingest_bearer, "application/json",
                 "{\"RecordType\": \"Bounce\", \"Type\": \"SoftBounce\", \"Email\": "
                 "\"cy@example.com\", \"MessageID\": \"pm-none\", \"Description\": \"mailbox "
                 "full\"}",
                 &status);
    assert_int_equal(status, 200);
    assert_int_equal(json_integer_value(json_object_get(o, "recorded")), 1);
    json_decref(o);
    assert_int_equal(suppressions(), before);
    /* a DSN from the MTA: cy's message failed for good (5.1.1) */
    snprintf(body, sizeof body,
             "From: MAILER-DAEMON@mx.example\r\nTo: news@example.com\r\nSubject: Undelivered\r\n"
             "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status;"
             "\r\n\tboundary=\"B0UND\"\r\n\r\nThis is a MIME report.\r\n\r\n--B0UND\r\n"
             "Content-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\r\n"
             "--B0UND\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; "
             "mx.example\r\n\r\nFinal-Recipient: rfc822; cy@example.com\r\nAction: failed\r\n"
             "Status: 5.1.1\r\nDiagnostic-Code: smtp; 550 no such user\r\n\r\n--B0UND\r\n"
             "Content-Type: text/rfc822-headers\r\n\r\nFrom: news@example.com\r\nX-Baton-Key: "
             "%s\r\nSubject: News\r\n\r\n--B0UND--\r\n",
             cy_key);
    o = feedback("dsn", ingest_bearer, "message/rfc822", body, &status);
    assert_int_equal(status, 200);
    assert_int_equal(json_integer_value(json_object_get(o, "matched")), 1);
    json_decref(o);
    v = delivery("status || '|' || reason", "cy@example.com", cy_key);
    assert_string_equal(v, "bounced|bounced: 5.1.1 smtp; 550 no such user");
    free(v);
    /* Postmark: bob's journey message reported as spam, found by provider id */
    char *pid = delivery("provider_id", "bob@example.com", "j:");
    assert_true(*pid);
    snprintf(body, sizeof body,
             "{\"RecordType\": \"SpamComplaint\", \"Email\": \"bob@example.com\", "
             "\"MessageID\": \"%s\"}",
             pid);
    o = feedback("postmark", ingest_bearer, "application/json", body, &status);
    assert_int_equal(status, 200);
    assert_int_equal(json_integer_value(json_object_get(o, "matched")), 1);
    json_decref(o);
    v = delivery("status", "bob@example.com", "j:");
    assert_string_equal(v, "complained");
    free(v);
    free(pid);
    /* a mapping: one ignored (delivered), one hard bounce of an address
     * baton never wrote to */
    o = feedback("esp", ingest_bearer, "application/json",
                 "[{\"event\": \"delivered\", \"email\": \"x@example.com\"},"
                 " {\"event\": \"bounce\", \"email\": \"Eve@Example.com\", \"why\": \"550\"}]",
                 &status);
    assert_int_equal(status, 200);
    assert_int_equal(json_integer_value(json_object_get(o, "ignored")), 1);
    assert_int_equal(json_integer_value(json_object_get(o, "recorded")), 1);
    assert_int_equal(json_integer_value(json_object_get(o, "matched")), 0);
    json_decref(o);
    char *n = sh("sqlite3 %s/var/state.db \"SELECT count(*) FROM suppressions WHERE kind = "
                 "'address' AND value IN ('bob@example.com', 'cy@example.com', "
                 "'eve@example.com')\"",
                 dir);
    assert_int_equal(atoi(n), 3);
    free(n);
    /* the bounce entered the journey that waits for it */
    json_t *js = NULL;
    char *s = NULL;
    for (int i = 0; i < 500; i++) {
        json_decref(js);
        free(s);
        js = cli_json("journey status bounced --json");
        s = json_dumps(js, JSON_COMPACT);
        if (strstr(s, "\"completed\":2"))
            break;
        nap_ms(20);
    }
    if (!strstr(s, "\"completed\":2"))
        fail_msg("email_bounced did not enter twice (bob by SES, cy by DSN): %s", s);
    free(s);
    json_decref(js);
    free(bob_key);
    free(cy_key);
    /* and the next run writes to no one */
    long sent_before = sink_count();
    run_campaign();
    assert_int_equal(sink_count(), sent_before);
    json_t *runs = cli_json("campaign runs news --json");
    json_t *acts = json_object_get(json_array_get(json_object_get(runs, "runs"), 0), "activities");
    json_t *a;
    size_t i;
    json_array_foreach(acts, i, a) if (!strcmp(json_string_value(json_object_get(a, "id")), "m"))
        assert_int_equal(json_integer_value(json_object_get(a, "suppressed")), 3);
    json_decref(runs);
    /* plan counts them apart too, and changes nothing */
    json_t *plan = cli_json("campaign plan news --json");
    json_t *ex = json_object_get(json_object_get(plan, "excluded"), "m");
    assert_int_equal(json_integer_value(json_object_get(ex, "suppressed")), 3);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(plan, "counts"), "m")), 0);
    json_decref(plan);
}

/* The Message-ID of the latest message the sink holds for addr, as sent. */
static char *sent_message_id(const char *addr)
{
    char *v = sh("/usr/bin/python3 -c \"import email, json\n"
                 "mid = ''\n"
                 "for l in open('%s/smtp/log.jsonl'):\n"
                 "    e = json.loads(l)\n"
                 "    if e['rcpt_tos'][0] == '%s':\n"
                 "        mid = email.message_from_bytes(open('%s/smtp/' + e['file'], "
                 "'rb').read())['Message-ID']\n"
                 "print(mid)\"",
                 dir, addr, dir);
    v[strcspn(v, "\n")] = 0;
    if (v[0] != '<')
        fail_msg("no message to %s in the sink: '%s'", addr, v);
    return v;
}

/* Bounces that name no X-Baton-Key (the relay strips it: Postfix's
 * smtp_header_checks, Exim's headers_remove) and no queue id of ours
 * (the bounce came from a host further on) find their delivery by the
 * Message-ID they quote: Postfix's and Exim's returned headers, an
 * Exchange-like report's References with nothing returned;
 * SES's commonHeaders.messageId and a mapping's message_id alike. */
static void test_bounces_found_by_message_id(void **st)
{
    free(sh("sqlite3 %s/var/crm.db \"INSERT INTO profiles (id, email, first_name, consent_email) "
            "VALUES ('p4', 'dan@example.com', 'Dan', 1), ('p5', 'kim@example.com', 'Kim', 1),"
            " ('p6', 'gus@example.com', 'Gus', 1), ('p7', 'hal@example.com', 'Hal', 1),"
            " ('p8', 'ivy@example.com', 'Ivy', 1)\"",
            dir));
    long before = sink_count();
    run_campaign(); /* the others are suppressed by now */
    for (int i = 0; i < 1000 && sink_count() < before + 5; i++)
        nap_ms(10);
    assert_int_equal(sink_count(), before + 5);
    static const char *const who[] = {"dan", "kim", "gus", "hal", "ivy"};
    char *mid[5], *key[5], addr[64];
    for (int i = 0; i < 5; i++) {
        snprintf(addr, sizeof addr, "%s@example.com", who[i]);
        mid[i] = sent_message_id(addr);
        key[i] = delivery("key", addr, "news/");
        assert_true(*key[i]);
    }
    char body[8192];
    int status;
    /* Postfix, from the recipient's MX: its own queue id, the headers
     * returned (text/rfc822-headers), a folded Diagnostic-Code */
    snprintf(body, sizeof body,
             "Return-Path: <>\n"
             "Received: by mx.example.net (Postfix) id 4QZf1x0Jk9z9s; Thu,  3 Dec 2026 09:12:01 "
             "+0000 (UTC)\n"
             "Date: Thu,  3 Dec 2026 09:12:01 +0000 (UTC)\n"
             "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\n"
             "Subject: Undelivered Mail Returned to Sender\n"
             "To: news@example.com\n"
             "Auto-Submitted: auto-replied\n"
             "MIME-Version: 1.0\n"
             "Content-Type: multipart/report; report-type=delivery-status;\n"
             "\tboundary=\"4QZf1x0Jk9z9s.1764753121/mx.example.net\"\n"
             "Content-Transfer-Encoding: 7bit\n"
             "Message-Id: <20261203091201.4QZf1x0Jk9z9s@mx.example.net>\n"
             "\n"
             "This is a MIME-encapsulated message.\n"
             "\n"
             "--4QZf1x0Jk9z9s.1764753121/mx.example.net\n"
             "Content-Description: Notification\n"
             "Content-Type: text/plain; charset=us-ascii\n"
             "\n"
             "This is the mail system at host mx.example.net.\n"
             "\n"
             "<dan@example.com>: host mail.example.com[192.0.2.25] said: 550 5.1.1\n"
             "    <dan@example.com>: Recipient address rejected: User unknown in virtual\n"
             "    mailbox table (in reply to RCPT TO command)\n"
             "\n"
             "--4QZf1x0Jk9z9s.1764753121/mx.example.net\n"
             "Content-Description: Delivery report\n"
             "Content-Type: message/delivery-status\n"
             "\n"
             "Reporting-MTA: dns; mx.example.net\n"
             "X-Postfix-Queue-ID: 4QZf1x0Jk9z9s\n"
             "X-Postfix-Sender: rfc822; news@example.com\n"
             "Arrival-Date: Thu,  3 Dec 2026 09:11:58 +0000 (UTC)\n"
             "\n"
             "Final-Recipient: rfc822; dan@example.com\n"
             "Original-Recipient: rfc822;dan@example.com\n"
             "Action: failed\n"
             "Status: 5.1.1\n"
             "Remote-MTA: dns; mail.example.com\n"
             "Diagnostic-Code: smtp; 550 5.1.1 <dan@example.com>: Recipient address\n"
             "    rejected: User unknown in virtual mailbox table\n"
             "\n"
             "--4QZf1x0Jk9z9s.1764753121/mx.example.net\n"
             "Content-Description: Undelivered Message Headers\n"
             "Content-Type: text/rfc822-headers\n"
             "Content-Transfer-Encoding: 7bit\n"
             "\n"
             "Return-Path: <news@example.com>\n"
             "Received: from relay.example.com (relay.example.com [192.0.2.10])\n"
             "\tby mx.example.net (Postfix) with ESMTPS id 4QZf1x0Jk9z9s\n"
             "\tfor <dan@example.com>; Thu,  3 Dec 2026 09:11:58 +0000 (UTC)\n"
             "From: Shop <news@example.com>\n"
             "To: <dan@example.com>\n"
             "Subject: News\n"
             "Message-ID: %s\n"
             "MIME-Version: 1.0\n"
             "\n"
             "--4QZf1x0Jk9z9s.1764753121/mx.example.net--\n",
             mid[0]);
    json_t *o = feedback("dsn", ingest_bearer, "message/rfc822", body, &status);
    assert_int_equal(status, 200);
    assert_int_equal(json_integer_value(json_object_get(o, "matched")), 1);
    json_t *r = json_array_get(json_object_get(o, "results"), 0);
    assert_string_equal(json_string_value(json_object_get(r, "delivery")), key[0]);
    json_decref(o);
    /* the MTA posts it again, later: the same event, a duplicate (not
     * an id reused with other content) */
    nap_ms(1100);
    o = feedback("dsn", ingest_bearer, "message/rfc822", body, &status);
    assert_int_equal(status, 200);
    json_t *evs = json_object_get(o, "events");
    assert_int_equal(json_integer_value(json_object_get(evs, "duplicate")), 1);
    assert_int_equal(json_integer_value(json_object_get(evs, "dead_lettered")), 0);
    json_decref(o);
    char *v = delivery("status || '|' || reason", "dan@example.com", key[0]);
    assert_string_equal(v, "bounced|bounced: 5.1.1 smtp; 550 5.1.1 <dan@example.com>: Recipient "
                           "address rejected: User unknown in virtual mailbox table");
    free(v);
    /* Exim: Action before Final-Recipient, Status 5.0.0, the whole
     * message returned (message/rfc822), lowercase Content-type; its
     * Message-ID folded as channel_email folds one too long for a line */
    snprintf(body, sizeof body,
             "Return-path: <>\n"
             "Envelope-to: news@example.com\n"
             "Received: from Debian-exim by mx2.example.org with local (Exim 4.96)\n"
             "\tid 1kXYZa-000Abc-1F\n"
             "\tfor news@example.com; Thu, 03 Dec 2026 09:12:01 +0000\n"
             "X-Failed-Recipients: kim@example.com\n"
             "Auto-Submitted: auto-replied\n"
             "From: Mail Delivery System <Mailer-Daemon@mx2.example.org>\n"
             "To: news@example.com\n"
             "Content-Type: multipart/report; report-type=delivery-status; "
             "boundary=1764753121-eximdsn-846930886\n"
             "MIME-Version: 1.0\n"
             "Subject: Mail delivery failed: returning message to sender\n"
             "Message-Id: <E1kXYZa-000Abc-1F@mx2.example.org>\n"
             "Date: Thu, 03 Dec 2026 09:12:01 +0000\n"
             "\n"
             "--1764753121-eximdsn-846930886\n"
             "Content-type: text/plain; charset=us-ascii\n"
             "\n"
             "This message was created automatically by mail delivery software.\n"
             "\n"
             "A message that you sent could not be delivered to one or more of its\n"
             "recipients. This is a permanent error. The following address(es) failed:\n"
             "\n"
             "  kim@example.com\n"
             "    host mail.example.org [192.0.2.30]\n"
             "    SMTP error from remote mail server after RCPT TO:<kim@example.com>:\n"
             "    550 5.1.1 <kim@example.com>: mailbox unavailable\n"
             "\n"
             "--1764753121-eximdsn-846930886\n"
             "Content-type: message/delivery-status\n"
             "\n"
             "Reporting-MTA: dns; mx2.example.org\n"
             "\n"
             "Action: failed\n"
             "Final-Recipient: rfc822;kim@example.com\n"
             "Status: 5.0.0\n"
             "Remote-MTA: dns; mail.example.org\n"
             "Diagnostic-Code: smtp; 550 5.1.1 <kim@example.com>: mailbox unavailable\n"
             "\n"
             "--1764753121-eximdsn-846930886\n"
             "Content-type: message/rfc822\n"
             "\n"
             "Return-path: <news@example.com>\n"
             "Received: from [192.0.2.10] by mx2.example.org with esmtp (Exim 4.96)\n"
             "\tid 1kXYZ9-000Abb-0E\n"
             "\tfor kim@example.com; Thu, 03 Dec 2026 09:11:59 +0000\n"
             "From: Shop <news@example.com>\n"
             "To: <kim@example.com>\n"
             "Subject: News\n"
             "Message-ID:\n %s\n"
             "MIME-Version: 1.0\n"
             "Content-Type: text/plain; charset=UTF-8\n"
             "Content-Transfer-Encoding: quoted-printable\n"
             "\n"
             "Hello Kim\n"
             "\n"
             "--1764753121-eximdsn-846930886--\n",
             mid[1]);
    o = feedback("dsn", ingest_bearer, "message/rfc822", body, &status);
    assert_int_equal(status, 200);
    assert_int_equal(json_integer_value(json_object_get(o, "matched")), 1);
    r = json_array_get(json_object_get(o, "results"), 0);
    assert_string_equal(json_string_value(json_object_get(r, "delivery")), key[1]);
    json_decref(o);
    /* a generic (Exchange-like) report, CRLF: nothing returned, the
     * original named by its References only (folded, after another) */
    snprintf(body, sizeof body,
             "From: postmaster@outlook.example\r\n"
             "To: news@example.com\r\n"
             "Date: Thu, 3 Dec 2026 09:12:02 +0000\r\n"
             "Subject: Undeliverable: News\r\n"
             "Content-Type: multipart/report; report-type=delivery-status;\r\n"
             "\tboundary=\"_000_BN0PR00MB0000_\"\r\n"
             "References: <thread-1@example.com>\r\n %s\r\n"
             "Thread-Topic: News\r\n"
             "MIME-Version: 1.0\r\n"
             "\r\n"
             "--_000_BN0PR00MB0000_\r\n"
             "Content-Type: text/plain; charset=\"us-ascii\"\r\n"
             "\r\n"
             "Delivery has failed to these recipients or groups: gus@example.com\r\n"
             "\r\n"
             "--_000_BN0PR00MB0000_\r\n"
             "Content-Type: message/delivery-status\r\n"
             "\r\n"
             "Reporting-MTA: dns;BN0PR00MB0000.outlook.example\r\n"
             "Received-From-MTA: dns;relay.example.com\r\n"
             "Arrival-Date: Thu, 3 Dec 2026 09:12:00 +0000\r\n"
             "\r\n"
             "Final-Recipient: rfc822;gus@example.com\r\n"
             "Action: failed\r\n"
             "Status: 5.2.2\r\n"
             "Diagnostic-Code: smtp;554 5.2.2 mailbox full\r\n"
             "\r\n"
             "--_000_BN0PR00MB0000_--\r\n",
             mid[2]);
    o = feedback("dsn", ingest_bearer, "message/rfc822", body, &status);
    assert_int_equal(status, 200);
    assert_int_equal(json_integer_value(json_object_get(o, "matched")), 1);
    r = json_array_get(json_object_get(o, "results"), 0);
    assert_string_equal(json_string_value(json_object_get(r, "delivery")), key[2]);
    json_decref(o);
    /* SES without the original headers: commonHeaders.messageId only
     * (its own mail.messageId is no id of ours) */
    snprintf(body, sizeof body,
             "{\"Type\": \"Notification\", \"MessageId\": \"n2\", \"TopicArn\": \"arn:t\", "
             "\"Message\": \"{\\\"notificationType\\\": \\\"Complaint\\\", \\\"complaint\\\": "
             "{\\\"complainedRecipients\\\": [{\\\"emailAddress\\\": \\\"hal@example.com\\\"}], "
             "\\\"complaintFeedbackType\\\": \\\"abuse\\\"}, \\\"mail\\\": {\\\"messageId\\\": "
             "\\\"0100018c-elsewhere\\\", \\\"commonHeaders\\\": {\\\"messageId\\\": "
             "\\\"%s\\\"}}}\"}",
             mid[3]);
    o = feedback("ses", ingest_basic, "text/plain; charset=UTF-8", body, &status);
    assert_int_equal(status, 200);
    assert_int_equal(json_integer_value(json_object_get(o, "matched")), 1);
    json_decref(o);
    v = delivery("status", "hal@example.com", key[3]);
    assert_string_equal(v, "complained");
    free(v);
    /* a mapping whose message_id is the Message-ID (SendGrid's smtp-id) */
    snprintf(body, sizeof body,
             "[{\"event\": \"bounce\", \"email\": \"ivy@example.com\", \"why\": \"550 5.1.1\", "
             "\"smtp-id\": \"%s\"}]",
             mid[4]);
    o = feedback("esp", ingest_bearer, "application/json", body, &status);
    assert_int_equal(status, 200);
    assert_int_equal(json_integer_value(json_object_get(o, "matched")), 1);
    json_decref(o);
    v = delivery("status", "ivy@example.com", key[4]);
    assert_string_equal(v, "bounced");
    free(v);
    /* a Message-ID of nobody's (another sender's) matches nothing */
    o = feedback("esp", ingest_bearer, "application/json",
                 "{\"event\": \"bounce\", \"email\": \"zed@example.com\", \"smtp-id\": "
                 "\"<20261203.abc@elsewhere.example>\"}",
                 &status);
    assert_int_equal(status, 200);
    assert_int_equal(json_integer_value(json_object_get(o, "matched")), 0);
    json_decref(o);
    for (int i = 0; i < 5; i++) {
        free(mid[i]);
        free(key[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_campaign_mail_carries_the_link),
        cmocka_unit_test(test_get_shows_a_page_and_changes_nothing),
        cmocka_unit_test(test_forged_and_replayed_tokens_refused),
        cmocka_unit_test(test_one_click_post),
        cmocka_unit_test(test_suppressed_profile_gets_nothing_more),
        cmocka_unit_test(test_feedback_auth_and_errors),
        cmocka_unit_test(test_bounces_and_complaints),
        cmocka_unit_test(test_bounces_found_by_message_id),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
