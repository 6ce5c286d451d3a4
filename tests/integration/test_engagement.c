/* Engagement tracking end to end: `baton serve` with an HTTP listener and
 * an email channel with `tracking = { opens = true; clicks = true; }`
 * into a real SMTP sink (tests/support/smtp_sink.py). A campaign's html
 * part carries an open pixel and its http(s) links as signed redirects
 * (mailto:, data-notrack and the text part untouched); GET /t/o/TOKEN
 * answers a 1x1 GIF that no one caches, GET /t/c/TOKEN a 302 to the
 * signed URL and to nothing else; hits are recorded per delivery, the
 * first open and the first click of each link enter email_opened /
 * email_clicked into journeys (a wait_event reacts to a click), and runs
 * and journey nodes count the deliveries opened and clicked. Forged,
 * altered, foreign, other-purpose and non-http tokens are refused and
 * record nothing; a configuration with tracking but no public_url is an
 * error. */
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

#include "base/buf.h"
#include "delivery/linktoken.h"
#include "support/fs.h"
#include "support/server.h"

#define LINK_SECRET "link-secret-0123456789abcdef-xyz"
#define INGEST "ingest-secret-0123456789abcdef"
#define OPS "ops-secret-0123456789abcdef0123"
#define ODD "odd \"q\" \\ b"
#define SALE "https://shop.example.com/sale?a=1&b=2"

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
    char cmd[16384];
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

/* GET path with curl (no redirect followed): the status; the headers
 * (lower-cased names) and the body in *hdrs and *body (may be NULL). */
static int get(const char *path, const char *opts, char **hdrs, char **body, size_t *blen)
{
    char bf[1024], hf[1024];
    snprintf(bf, sizeof bf, "%s/resp.body", dir);
    snprintf(hf, sizeof hf, "%s/resp.hdrs", dir);
    char *so = sh("curl -s -o %s -D %s -w '%%{http_code}' %s 'http://127.0.0.1:%d%s'", bf, hf,
                  opts ? opts : "", port, path);
    int status = atoi(so);
    free(so);
    char *b = file_read(bf, blen);
    if (body)
        *body = b;
    else
        free(b);
    if (hdrs) {
        *hdrs = file_read(hf, NULL);
        for (char *p = *hdrs; p && *p; p++) /* names and values: compare without case */
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
    }
    unlink(bf);
    unlink(hf);
    return status;
}

static long sql_long(const char *q)
{
    char *n = sh("sqlite3 %s/var/state.db \"%s\"", dir, q);
    long v = atol(n);
    free(n);
    return v;
}

static long sink_count(void)
{
    char *n = sh("cat %s/smtp/log.jsonl 2>/dev/null | wc -l", dir);
    long v = atol(n);
    free(n);
    return v;
}

/* The html and text parts of the latest message to rcpt, as "HTML\x1eTEXT". */
static char *sink_parts(const char *rcpt)
{
    return sh("/usr/bin/python3 -c \"import email, json, sys\n"
              "last = None\n"
              "for l in open('%s/smtp/log.jsonl'):\n"
              "    e = json.loads(l)\n"
              "    if e['rcpt_tos'][0] == '%s': last = e\n"
              "m = email.message_from_bytes(open('%s/smtp/' + last['file'], 'rb').read())\n"
              "parts = {p.get_content_type(): p.get_payload(decode=True).decode() for p in "
              "m.walk() if not p.is_multipart()}\n"
              "sys.stdout.write(parts['text/html'] + chr(30) + parts['text/plain'])\"",
              dir, rcpt, dir);
}

/* The path (from /t/) of the first "PREFIX/t/KIND/..." in s, into out. */
static void tracked_path(const char *s, const char *kind, char *out, size_t outlen)
{
    char pre[128];
    snprintf(pre, sizeof pre, "https://news.example.test/t/%s/", kind);
    const char *at = strstr(s, pre);
    if (!at)
        fail_msg("no %s link in: %s", pre, s);
    at += strlen("https://news.example.test");
    snprintf(out, outlen, "%.*s", (int)strcspn(at, "\"'"), at);
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

/* Journey j's state count, waited for up to 10 s to reach want. */
static long journey_state(const char *j, const char *state, long want)
{
    char args[128];
    snprintf(args, sizeof args, "journey status %s --json", j);
    long v = -1;
    for (int i = 0; i < 500; i++) {
        json_t *o = cli_json(args);
        v = (long)json_integer_value(json_object_get(json_object_get(o, "states"), state));
        json_decref(o);
        if (v == want)
            break;
        nap_ms(20);
    }
    return v;
}

#define BASE_CFG                                                                                   \
    "baton: { data_dir = \"var\"; plugin_path = [ \"%s\" ]; log = { level = \"info\"; }; };\n"     \
    "sources: { crm: { plugin = \"source_sqlite\"; path = \"var/crm.db\"; schema = "               \
    "\"%s/conf/schema.cfg\"; }; };\n"                                                              \
    "profiles = \"crm\";\n"                                                                        \
    "channels: { email: { plugin = \"channel_email\"; port = %d; from = \"Shop "                   \
    "<news@example.com>\"; address = \"email\"; consent = \"consent_email\";\n"                    \
    "  tracking = { opens = true; clicks = true; }; }; };\n"                                       \
    "campaigns = [ \"campaigns\" ];\n"                                                             \
    "journeys = [ \"journeys\" ];\n"                                                               \
    "http = { listen = \"127.0.0.1:%d\"; %s\n"                                                     \
    "  tokens = ( { name = \"ingest\"; secret = \"${env:T_INGEST}\"; scopes = [ "                  \
    "\"events:write\" ]; },\n"                                                                     \
    "             { name = \"ops\"; secret = \"${env:T_OPS}\"; scopes = [ \"read\" ]; } ); };\n"

static int start_serve(void);

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
    dir = tmpdir_make("engagement");
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
            " ('p1', 'ann@example.com', 'Ann', 1), ('p2', 'bob@example.com', 'Bob', 1);\"",
            dir, dir, dir, dir, dir));
    char sinkdir[1024];
    snprintf(sinkdir, sizeof sinkdir, "%s/smtp", dir);
    char script[1024];
    snprintf(script, sizeof script, "%s/tests/support/smtp_sink.py", src);
    char *argv[] = {"/usr/bin/python3", script, "--dir", sinkdir, NULL};
    if (server_start_ready(&smtp, argv, 15000) != 0)
        return -1;
    free(file_write(
        dir, "campaigns/promo.cfg",
        "campaign: { name = \"promo\"; activities = (\n"
        "  { id = \"all\"; type = \"build_audience\"; dimension = \"profiles\"; "
        "filter = \"consent_email\"; },\n"
        "  { id = \"m\"; type = \"send\"; channel = \"email\"; input = \"all\";\n"
        "    subject = \"Sale\"; text = \"Sale: " SALE "\";\n"
        "    html = \"<html><body><p>Hi {{ first_name }}</p>"
        "<a href='https://shop.example.com/sale?a=1&amp;b=2'>Sale</a> "
        "<a href='mailto:help@example.com'>help</a> "
        "<a data-notrack href='https://example.org/keep'>keep</a></body></html>\"; } ); };\n"));
    free(file_write(dir, "journeys/opened.cfg",
                    "journey: { name = \"opened\"; entry = { event = \"email_opened\"; };\n"
                    "  start = \"done\"; nodes = ( { id = \"done\"; type = \"end\"; } ); };\n"));
    free(file_write(dir, "journeys/clicked.cfg",
                    "journey: { name = \"clicked\"; entry = { event = \"email_clicked\"; };\n"
                    "  start = \"done\"; nodes = ( { id = \"done\"; type = \"end\"; } ); };\n"));
    /* a reaction: the journey's own mail, then waiting for its click */
    free(file_write(
        dir, "journeys/nudge.cfg",
        "journey: { name = \"nudge\"; entry = { event = \"order\"; };\n"
        "  start = \"mail\"; nodes = (\n"
        "    { id = \"mail\"; type = \"send\"; channel = \"email\"; subject = "
        "\"Thanks\"; text = \"Thank you\";\n"
        "      html = \"<p>Review <a href='https://shop.example.com/review'>it</a></p>\";"
        " next = \"w\"; },\n"
        "    { id = \"w\"; type = \"wait_event\"; event = \"email_clicked\";\n"
        "      filter = \"w.link == 'https://shop.example.com/review'\"; timeout = "
        "\"1h\"; on_event = \"yes\"; on_timeout = \"no\"; },\n"
        "    { id = \"yes\"; type = \"end\"; }, { id = \"no\"; type = \"end\"; } ); };\n"));
    /* a reaction to a bounce that `baton feedback dsn` reads */
    free(file_write(
        dir, "journeys/bounce_watch.cfg",
        "journey: { name = \"bounce_watch\"; entry = { event = \"signup\"; };\n"
        "  start = \"mail\"; nodes = (\n"
        "    { id = \"mail\"; type = \"send\"; channel = \"email\"; subject = "
        "\"Welcome\"; text = \"Welcome\"; next = \"w\"; },\n"
        "    { id = \"w\"; type = \"wait_event\"; event = \"email_bounced\"; timeout = "
        "\"1h\"; on_event = \"gone\"; on_timeout = \"kept\"; },\n"
        "    { id = \"gone\"; type = \"end\"; }, { id = \"kept\"; type = \"end\"; } ); };\n"));
    /* a journey whose name a metrics label must escape (ODD) */
    free(file_write(dir, "journeys/odd.cfg",
                    "journey: { name = \"odd \\\"q\\\" \\\\ b\"; entry = { event = \"order\"; };\n"
                    "  start = \"done\"; nodes = ( { id = \"done\"; type = \"end\"; } ); };\n"));
    port = server_free_port();
    char *text;
    if (asprintf(&text, BASE_CFG, plugins, src, smtp.port, port,
                 "public_url = \"https://news.example.test/\"; link_secret = \"${env:T_LINK}\";") <
        0)
        abort();
    cfg = file_write(dir, "baton.cfg", text);
    free(text);
    return start_serve();
}

static int start_serve(void)
{
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
        if (server_port_open(port) && get("/readyz", NULL, NULL, NULL, NULL) == 200)
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

static char ann_open[LINKTOKEN_MAX + 16], ann_click[LINKTOKEN_MAX + 16];
static char ann_key[256];

static void test_html_part_carries_pixel_and_redirects(void **st)
{
    char *out = NULL, *err = NULL;
    int rc = run_baton(dir, cfg, &out, &err, "campaign run promo");
    if (rc != 0)
        fail_msg("campaign run: exit %d: %s%s", rc, out ? out : "", err ? err : "");
    free(out);
    free(err);
    assert_int_equal(sink_count(), 2);
    char *parts = sink_parts("ann@example.com");
    char *sep = strchr(parts, 30);
    assert_non_null(sep);
    *sep = 0;
    const char *html = parts, *txt = sep + 1;
    /* the text part is as written; so are mailto: and data-notrack links */
    assert_non_null(strstr(txt, SALE));
    assert_null(strstr(html, "shop.example.com"));
    assert_non_null(strstr(html, "href='mailto:help@example.com'"));
    assert_non_null(strstr(html, "href='https://example.org/keep'"));
    tracked_path(html, "o", ann_open, sizeof ann_open);
    tracked_path(html, "c", ann_click, sizeof ann_click);
    /* the pixel sits before </body> */
    assert_true(strstr(html, "<img src=\"https://news.example.test/t/o/") <
                strstr(html, "</body>"));
    /* the click token is ours and says where it goes, for whom */
    static linktoken_parsed p;
    const char *tok = ann_click + strlen("/t/c/");
    assert_int_equal(linktoken_verify(tok, strlen(tok), LINK_SECRET, LINK_CLICK, time(NULL), &p),
                     LINKTOKEN_OK);
    assert_string_equal(p.t.link, SALE);
    assert_string_equal(p.t.profile, "p1");
    assert_string_equal(p.t.origin, "campaign");
    assert_string_equal(p.t.name, "promo");
    assert_string_equal(p.t.node, "m");
    snprintf(ann_key, sizeof ann_key, "%s", p.t.key);
    char q[512];
    snprintf(q, sizeof q,
             "SELECT count(*) FROM deliveries WHERE key = '%s' AND recipient = "
             "'ann@example.com'",
             ann_key);
    assert_int_equal(sql_long(q), 1);
    free(parts);
}

static long hits(const char *kind)
{
    char q[512];
    snprintf(q, sizeof q, "SELECT count(*) FROM engagement WHERE kind = '%s' AND key = '%s'", kind,
             ann_key);
    return sql_long(q);
}

static void test_open_pixel(void **st)
{
    char *h = NULL, *body = NULL;
    size_t n = 0;
    assert_int_equal(get(ann_open, NULL, &h, &body, &n), 200);
    assert_non_null(strstr(h, "content-type: image/gif"));
    assert_non_null(strstr(h, "cache-control: no-store"));
    assert_non_null(strstr(h, "pragma: no-cache"));
    assert_int_equal(n, 43);
    assert_memory_equal(body, "GIF89a\x01\x00\x01\x00", 10);
    free(h);
    free(body);
    assert_int_equal(hits("open"), 1);
    assert_int_equal(journey_state("opened", "completed", 1), 1);
    /* opened again (another device): counted, but it enters no journey again */
    assert_int_equal(get(ann_open, NULL, NULL, NULL, NULL), 200);
    assert_int_equal(hits("open"), 2);
    json_t *o = cli_json("journey status opened --json");
    assert_int_equal(json_integer_value(json_object_get(o, "profiles")), 1);
    json_decref(o);
}

static void test_click_redirects_to_the_signed_url_only(void **st)
{
    char *h = NULL;
    assert_int_equal(get(ann_click, NULL, &h, NULL, NULL), 302);
    /* headers are lower-cased here: compare the URL so */
    assert_non_null(strstr(h, "location: https://shop.example.com/sale?a=1&b=2\r\n"));
    free(h);
    assert_int_equal(hits("click"), 1);
    assert_int_equal(journey_state("clicked", "completed", 1), 1);
    /* a query naming another target changes nothing: the token decides */
    char path[LINKTOKEN_MAX + 64];
    snprintf(path, sizeof path, "%s?url=https://evil.example.com/", ann_click);
    assert_int_equal(get(path, NULL, &h, NULL, NULL), 302);
    assert_non_null(strstr(h, "location: https://shop.example.com/sale?a=1&b=2\r\n"));
    assert_null(strstr(h, "evil"));
    free(h);
    assert_int_equal(hits("click"), 2);
    /* the run counts the delivery opened and clicked once, whatever the hits */
    json_t *runs = cli_json("campaign runs promo --json");
    json_t *acts = json_object_get(json_array_get(json_object_get(runs, "runs"), 0), "activities");
    json_t *a;
    size_t i;
    int seen = 0;
    json_array_foreach(acts, i, a) if (!strcmp(json_string_value(json_object_get(a, "id")), "m"))
    {
        assert_int_equal(json_integer_value(json_object_get(a, "opened")), 1);
        assert_int_equal(json_integer_value(json_object_get(a, "clicked")), 1);
        seen = 1;
    }
    assert_true(seen);
    json_decref(runs);
}

static void expect_refused(const char *path, int want)
{
    char *h = NULL, *body = NULL;
    assert_int_equal(get(path, NULL, &h, &body, NULL), want);
    assert_null(strstr(h, "location:"));
    json_t *o = json_loads(body, 0, NULL);
    const char *code = json_string_value(json_object_get(json_object_get(o, "error"), "code"));
    assert_non_null(code);
    assert_string_equal(code, want == 410 ? "link_expired" : "invalid_link");
    json_decref(o);
    free(h);
    free(body);
}

static void test_forged_links_refused(void **st)
{
    long opens = sql_long("SELECT count(*) FROM engagement WHERE kind = 'open'");
    long clicks = sql_long("SELECT count(*) FROM engagement WHERE kind = 'click'");
    char t[LINKTOKEN_MAX + 16];
    size_t n = strlen(ann_click);
    /* one character changed in the payload, then in the signature; cut */
    snprintf(t, sizeof t, "%s", ann_click);
    t[8] = t[8] == 'A' ? 'B' : 'A';
    expect_refused(t, 403);
    snprintf(t, sizeof t, "%s", ann_click);
    t[n - 2] = t[n - 2] == 'A' ? 'B' : 'A';
    expect_refused(t, 403);
    snprintf(t, sizeof t, "%.*s", (int)(n - 4), ann_click);
    expect_refused(t, 403);
    /* the open token on the redirect and the click token on the pixel */
    snprintf(t, sizeof t, "/t/c/%s", ann_open + strlen("/t/o/"));
    expect_refused(t, 403);
    snprintf(t, sizeof t, "/t/o/%s", ann_click + strlen("/t/c/"));
    expect_refused(t, 403);
    buf b;
    buf_init(&b);
    linktoken lt = {.purpose = LINK_CLICK,
                    .profile = "p1",
                    .channel = "email",
                    .origin = "campaign",
                    .name = "promo",
                    .node = "m",
                    .key = ann_key,
                    .link = "https://evil.example.com/"};
    /* a redirect elsewhere signed with another secret */
    assert_int_equal(linktoken_make(&lt, "not-the-secret-0123456789", &b), 0);
    snprintf(t, sizeof t, "/t/c/%s", b.data);
    expect_refused(t, 403);
    /* an unsubscribe token, ours, is no click */
    buf_reset(&b);
    lt.purpose = LINK_UNSUBSCRIBE;
    assert_int_equal(linktoken_make(&lt, LINK_SECRET, &b), 0);
    snprintf(t, sizeof t, "/t/c/%s", b.data);
    expect_refused(t, 403);
    /* ours, but to a target that is not http(s): never made, never followed */
    buf_reset(&b);
    lt.purpose = LINK_CLICK;
    lt.link = "javascript:alert(1)";
    assert_int_equal(linktoken_make(&lt, LINK_SECRET, &b), 0);
    snprintf(t, sizeof t, "/t/c/%s", b.data);
    expect_refused(t, 403);
    /* ours, expired */
    buf_reset(&b);
    lt.link = SALE;
    lt.expires = time(NULL) - 10;
    assert_int_equal(linktoken_make(&lt, LINK_SECRET, &b), 0);
    snprintf(t, sizeof t, "/t/c/%s", b.data);
    expect_refused(t, 410);
    /* a page for a person's browser */
    char *body = NULL;
    snprintf(t, sizeof t, "%.*s", (int)(n - 4), ann_click);
    assert_int_equal(get(t, "-H 'Accept: text/html'", NULL, &body, NULL), 403);
    assert_non_null(strstr(body, "does not work"));
    free(body);
    buf_free(&b);
    assert_int_equal(sql_long("SELECT count(*) FROM engagement WHERE kind = 'open'"), opens);
    assert_int_equal(sql_long("SELECT count(*) FROM engagement WHERE kind = 'click'"), clicks);
    /* and a genuine link to a message the log does not hold: followed,
     * not counted */
    buf_reset(&b);
    lt.key = "promo/999/m/p1";
    lt.expires = 0;
    assert_int_equal(linktoken_make(&lt, LINK_SECRET, &b), 0);
    snprintf(t, sizeof t, "/t/c/%s", b.data);
    assert_int_equal(get(t, NULL, NULL, NULL, NULL), 302);
    buf_free(&b);
    assert_int_equal(sql_long("SELECT count(*) FROM engagement WHERE kind = 'click'"), clicks);
}

static void test_wait_event_reacts_to_a_click(void **st)
{
    char *out = NULL;
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "curl -s -o /dev/null -w '%%{http_code}' -H 'Authorization: Bearer %s' -H "
             "'Content-Type: application/json' --data-binary '{\"id\": \"o1\", \"type\": "
             "\"order\", \"profile\": \"p2\"}' 'http://127.0.0.1:%d/v1/events'",
             INGEST, port);
    out = sh("%s", cmd);
    assert_int_equal(atoi(out), 202);
    free(out);
    for (int k = 0; k < 1000 && sink_count() < 3; k++)
        nap_ms(10);
    assert_int_equal(sink_count(), 3);
    char *parts = sink_parts("bob@example.com");
    char path[LINKTOKEN_MAX + 16];
    tracked_path(parts, "c", path, sizeof path);
    free(parts);
    assert_int_equal(journey_state("nudge", "active", 1), 1);
    char *h = NULL;
    assert_int_equal(get(path, NULL, &h, NULL, NULL), 302);
    assert_non_null(strstr(h, "location: https://shop.example.com/review\r\n"));
    free(h);
    assert_int_equal(journey_state("nudge", "completed", 1), 1);
    json_t *o = cli_json("journey status nudge --json");
    json_t *nodes = json_object_get(o, "nodes");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(nodes, "w"), "reacted")),
                     1);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(nodes, "mail"), "clicked")),
                     1);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(nodes, "mail"), "opened")),
                     0);
    json_decref(o);
}

static void test_tracking_needs_public_url(void **st)
{
    char *text;
    if (asprintf(&text, BASE_CFG, plugins, src, smtp.port, port, "") < 0)
        abort();
    char *c = file_write(dir, "nourl.cfg", text);
    free(text);
    char *out = NULL, *err = NULL;
    int rc = run_baton(dir, c, &out, &err, "check");
    assert_int_not_equal(rc, 0);
    assert_non_null(err);
    if (!strstr(err, "channels.email.tracking needs http.public_url"))
        fail_msg("check: %s", err);
    free(out);
    free(err);
    /* and a tracking that is no group, or holds an unknown key */
    char *bad = sh("sed 's/tracking = { opens = true; clicks = true; }/tracking = true/' %s", cfg);
    free(c);
    c = file_write(dir, "bad.cfg", bad);
    free(bad);
    rc = run_baton(dir, c, &out, &err, "check");
    assert_int_not_equal(rc, 0);
    if (!strstr(err, "channels.email.tracking must be a group"))
        fail_msg("check: %s", err);
    free(out);
    free(err);
    bad = sh("sed 's/opens = true;/open = true;/' %s", cfg);
    free(c);
    c = file_write(dir, "bad.cfg", bad);
    free(bad);
    rc = run_baton(dir, c, &out, &err, "check");
    assert_int_not_equal(rc, 0);
    if (!strstr(err, "channels.email.tracking: unknown key 'open'"))
        fail_msg("check: %s", err);
    free(out);
    free(err);
    free(c);
}

/* The families of GET /metrics as tests/support/prom_check.py reads them
 * (a strict reader of the text format: any line the format does not
 * allow fails the test), as JSON. The text stays in DIR/metrics.txt. */
static json_t *metrics(void)
{
    char *raw = sh("curl -s -H 'Authorization: Bearer %s' 'http://127.0.0.1:%d/metrics' "
                   "> %s/metrics.txt && /usr/bin/python3 %s/tests/support/prom_check.py < "
                   "%s/metrics.txt",
                   OPS, port, dir, src, dir);
    json_t *o = json_loads(raw, 0, NULL);
    if (!o)
        fail_msg("prom_check gave no JSON: %s", raw);
    free(raw);
    return o;
}

/* The value of family fam's sample `name` whose labels hold l1=v1 (and
 * l2=v2), or -1 when there is none. */
static double sample(json_t *fams, const char *fam, const char *name, const char *l1,
                     const char *v1, const char *l2, const char *v2)
{
    json_t *smp, *s = json_object_get(json_object_get(fams, fam), "samples");
    size_t i;
    json_array_foreach(s, i, smp)
    {
        json_t *labels = json_array_get(smp, 1);
        const char *a = l1 ? json_string_value(json_object_get(labels, l1)) : NULL;
        const char *b = l2 ? json_string_value(json_object_get(labels, l2)) : NULL;
        if (strcmp(json_string_value(json_array_get(smp, 0)), name) ||
            (l1 && (!a || strcmp(a, v1))) || (l2 && (!b || strcmp(b, v2))))
            continue;
        return json_number_value(json_array_get(smp, 2));
    }
    return -1;
}

static void test_metrics_strict(void **st)
{
    json_t *fams = metrics();
    /* every family the issue lists, and the email loop's, with its type */
    static const char *const want[][2] = {
        {"baton_events_total", "counter"},
        {"baton_events_routed_total", "counter"},
        {"baton_inbox_depth", "gauge"},
        {"baton_routing_lag_seconds", "gauge"},
        {"baton_journey_instances", "gauge"},
        {"baton_sends_total", "counter"},
        {"baton_dispatch_queue_depth", "gauge"},
        {"baton_provider_latency_seconds", "histogram"},
        {"baton_action_calls_total", "counter"},
        {"baton_action_latency_seconds", "histogram"},
        {"baton_campaign_runs_total", "counter"},
        {"baton_campaign_run_duration_seconds", "summary"},
        {"baton_http_requests_total", "counter"},
        {"baton_tracking_hits_total", "counter"},
        {"baton_signed_links_refused_total", "counter"},
        {"baton_suppressions", "gauge"},
        {"baton_feedback_total", "counter"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        json_t *f = json_object_get(fams, want[i][0]);
        if (!f)
            fail_msg("/metrics has no %s", want[i][0]);
        assert_string_equal(json_string_value(json_object_get(f, "type")), want[i][1]);
        assert_non_null(json_string_value(json_object_get(f, "help")));
    }
    /* what the tests before did, counted: the order, the first open and
     * the first clicks (ann's, bob's) came in over HTTP */
    assert_true(sample(fams, "baton_events_total", "baton_events_total", "source", "http",
                       "outcome", "accepted") == 4);
    assert_true(sample(fams, "baton_tracking_hits_total", "baton_tracking_hits_total", "kind",
                       "open", NULL, NULL) == 2);
    /* ann's twice, the link of a message the log does not hold, bob's */
    assert_true(sample(fams, "baton_tracking_hits_total", "baton_tracking_hits_total", "kind",
                       "click", NULL, NULL) == 4);
    assert_true(sample(fams, "baton_signed_links_refused_total", "baton_signed_links_refused_total",
                       NULL, NULL, NULL, NULL) == 10);
    /* serve sent the journey's mail (the campaign ran in its own process) */
    assert_true(sample(fams, "baton_sends_total", "baton_sends_total", "channel", "email",
                       "outcome", "sent") == 1);
    assert_true(sample(fams, "baton_provider_latency_seconds",
                       "baton_provider_latency_seconds_count", "channel", "email", NULL,
                       NULL) >= 1);
    assert_true(sample(fams, "baton_campaign_runs_total", "baton_campaign_runs_total", "campaign",
                       "promo", NULL, NULL) == 1);
    assert_true(sample(fams, "baton_campaign_run_duration_seconds",
                       "baton_campaign_run_duration_seconds_count", "campaign", "promo", NULL,
                       NULL) == 1);
    /* a label value with a quote and a backslash reads back as it was */
    assert_true(sample(fams, "baton_journey_instances", "baton_journey_instances", "journey", ODD,
                       "state", "completed") == 1);
    assert_true(sample(fams, "baton_journey_instances", "baton_journey_instances", "journey",
                       "nudge", "state", "completed") == 1);
    json_decref(fams);
    /* and the reader is strict: every break of this very text it knows
     * (a second TYPE, a bad escape, buckets that fall...) fails it */
    char *out = NULL, *err = NULL;
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 %s/tests/support/prom_check.py --breaks %s/metrics.txt", src, dir);
    int rc = run_capture(cmd, &out, &err);
    if (rc != 0)
        fail_msg("prom_check --breaks: %s", err ? err : "");
    free(out);
    free(err);
}

/* A proof's mail is tracked as the real one looks, but its links name no
 * delivery: they answer and record nothing. */
static void test_proof_links_record_nothing(void **st)
{
    long before = sink_count();
    char *out = NULL, *err = NULL;
    int rc = run_baton(dir, cfg, &out, &err, "campaign run promo --proof proof@example.com");
    if (rc != 0)
        fail_msg("campaign run --proof: exit %d: %s%s", rc, out ? out : "", err ? err : "");
    free(out);
    free(err);
    /* the first 3 messages of the send: ann's and bob's */
    for (int k = 0; k < 1000 && sink_count() < before + 2; k++)
        nap_ms(10);
    assert_int_equal(sink_count(), before + 2);
    char *parts = sink_parts("proof@example.com");
    char open_path[LINKTOKEN_MAX + 16], click_path[LINKTOKEN_MAX + 16];
    tracked_path(parts, "o", open_path, sizeof open_path);
    tracked_path(parts, "c", click_path, sizeof click_path);
    free(parts);
    static linktoken_parsed p;
    const char *tok = click_path + strlen("/t/c/");
    assert_int_equal(linktoken_verify(tok, strlen(tok), LINK_SECRET, LINK_CLICK, time(NULL), &p),
                     LINKTOKEN_OK);
    assert_string_equal(p.t.key, "");
    assert_string_equal(p.t.link, SALE);
    long rows = sql_long("SELECT count(*) FROM engagement");
    char *h = NULL;
    assert_int_equal(get(click_path, NULL, &h, NULL, NULL), 302);
    assert_non_null(strstr(h, "location: https://shop.example.com/sale?a=1&b=2\r\n"));
    free(h);
    assert_int_equal(get(open_path, NULL, NULL, NULL, NULL), 200);
    assert_int_equal(sql_long("SELECT count(*) FROM engagement"), rows);
}

/* baton feedback dsn FILE: an MTA's bounce for ann's campaign mail,
 * recorded from the command line while serve runs. */
static void test_feedback_dsn_cli(void **st)
{
    char *report = NULL;
    if (asprintf(&report,
                 "From: MAILER-DAEMON@mx.example.test\n"
                 "Subject: Undelivered Mail Returned to Sender\n"
                 "Content-Type: multipart/report; report-type=delivery-status;\n"
                 "\tboundary=\"B0\"\n"
                 "\n"
                 "--B0\n"
                 "Content-Type: text/plain\n"
                 "\n"
                 "Your message could not be delivered.\n"
                 "--B0\n"
                 "Content-Type: message/delivery-status\n"
                 "\n"
                 "Reporting-MTA: dns; mx.example.test\n"
                 "\n"
                 "Final-Recipient: rfc822; ann@example.com\n"
                 "Action: failed\n"
                 "Status: 5.1.1\n"
                 "Diagnostic-Code: smtp; 550 5.1.1 no such user\n"
                 "\n"
                 "Final-Recipient: rfc822; other@example.com\n"
                 "Action: delayed\n"
                 "Status: 4.4.1\n"
                 "\n"
                 "--B0\n"
                 "Content-Type: text/rfc822-headers\n"
                 "\n"
                 "To: ann@example.com\n"
                 "X-Baton-Key: %s\n"
                 "\n"
                 "--B0--\n",
                 ann_key) < 0)
        abort();
    char *f = file_write(dir, "bounce.eml", report);
    free(report);
    char *out = NULL, *err = NULL;
    int rc = run_baton(dir, cfg, &out, &err, "feedback dsn %s --json", f);
    if (rc != 0)
        fail_msg("feedback dsn: exit %d: %s", rc, err ? err : "");
    json_t *o = json_loads(out, 0, NULL);
    assert_non_null(o);
    assert_int_equal(json_integer_value(json_object_get(o, "recorded")), 2);
    json_t *r0 = json_array_get(json_object_get(o, "results"), 0);
    assert_string_equal(json_string_value(json_object_get(r0, "type")), "hard_bounce");
    assert_string_equal(json_string_value(json_object_get(r0, "delivery")), ann_key);
    assert_true(json_is_true(json_object_get(r0, "suppressed")));
    json_t *r1 = json_array_get(json_object_get(o, "results"), 1);
    assert_string_equal(json_string_value(json_object_get(r1, "type")), "soft_bounce");
    assert_true(json_is_false(json_object_get(r1, "suppressed")));
    json_decref(o);
    free(out);
    free(err);
    free(f);
    char q[512];
    snprintf(q, sizeof q, "SELECT count(*) FROM deliveries WHERE key = '%s' AND status = 'bounced'",
             ann_key);
    assert_int_equal(sql_long(q), 1);
    assert_int_equal(sql_long("SELECT count(*) FROM suppressions WHERE channel = '*' AND kind = "
                              "'address' AND value = 'ann@example.com' AND reason = 'bounced'"),
                     1);
    assert_int_equal(
        sql_long("SELECT count(*) FROM suppressions WHERE value = 'other@example.com'"), 0);
    assert_int_equal(sql_long("SELECT count(*) FROM feedback WHERE provider = 'dsn'"), 2);
    /* not a report, on stdin: exit 2 with where and why, nothing recorded */
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "cd %s && printf 'Subject: hello\\n\\nnot a report\\n' | %s -c %s feedback dsn -", dir,
             bin, cfg);
    out = err = NULL;
    rc = run_capture(cmd, &out, &err);
    assert_int_equal(rc, 2);
    if (!err || !strstr(err, "stdin: byte 0: no message headers with a Content-Type"))
        fail_msg("feedback dsn -: %s", err ? err : "");
    free(out);
    free(err);
    assert_int_equal(sql_long("SELECT count(*) FROM feedback"), 2);
    /* a report that returned no X-Baton-Key: Postfix's queue id, the
     * `queued as` id the log holds, finds bob's journey mail */
    char *qid = sh("sqlite3 %s/var/state.db \"SELECT provider_id FROM deliveries WHERE recipient "
                   "= 'bob@example.com' AND key LIKE 'j:nudge:%%'\"",
                   dir);
    qid[strcspn(qid, "\n")] = 0;
    assert_true(qid[0] == 'Q');
    if (asprintf(&report,
                 "Content-Type: multipart/report; report-type=delivery-status; boundary=B1\n"
                 "\n"
                 "--B1\n"
                 "Content-Type: message/delivery-status\n"
                 "\n"
                 "Reporting-MTA: dns; mx.example.test\n"
                 "X-Postfix-Queue-ID: %s\n"
                 "\n"
                 "Final-Recipient: rfc822; bob@example.com\n"
                 "Action: failed\n"
                 "Status: 5.1.1\n"
                 "\n"
                 "--B1\n"
                 "Content-Type: text/rfc822-headers\n"
                 "\n"
                 "To: bob@example.com\n"
                 "Message-ID: <0123456789abcdef.0123456789abcdef@example.com>\n"
                 "\n"
                 "--B1--\n",
                 qid) < 0)
        abort();
    f = file_write(dir, "bounce2.eml", report);
    free(report);
    out = err = NULL;
    rc = run_baton(dir, cfg, &out, &err, "feedback dsn %s", f);
    if (rc != 0)
        fail_msg("feedback dsn: exit %d: %s", rc, err ? err : "");
    if (!strstr(out, "hard_bounce bob@example.com: suppressed, delivery j:nudge:"))
        fail_msg("feedback dsn: %s", out);
    free(out);
    free(err);
    free(f);
    char q2[512];
    snprintf(q2, sizeof q2,
             "SELECT count(*) FROM deliveries WHERE provider_id = '%s' AND status = 'bounced'",
             qid);
    assert_int_equal(sql_long(q2), 1);
    free(qid);
}

/* The Message-ID of the latest message the sink holds for rcpt. */
static char *sent_message_id(const char *rcpt)
{
    char *v = sh("/usr/bin/python3 -c \"import email, json\n"
                 "mid = ''\n"
                 "for l in open('%s/smtp/log.jsonl'):\n"
                 "    e = json.loads(l)\n"
                 "    if e['rcpt_tos'][0] == '%s':\n"
                 "        mid = email.message_from_bytes(open('%s/smtp/' + e['file'], "
                 "'rb').read())['Message-ID']\n"
                 "print(mid)\"",
                 dir, rcpt, dir);
    v[strcspn(v, "\n")] = 0;
    if (v[0] != '<')
        fail_msg("no message to %s in the sink: '%s'", rcpt, v);
    return v;
}

static void post_signup(const char *id, const char *profile)
{
    char *out = sh("curl -s -o /dev/null -w '%%{http_code}' -H 'Authorization: Bearer %s' -H "
                   "'Content-Type: application/json' --data-binary '{\"id\": \"%s\", \"type\": "
                   "\"signup\", \"profile\": \"%s\"}' 'http://127.0.0.1:%d/v1/events'",
                   INGEST, id, profile, port);
    assert_int_equal(atoi(out), 202);
    free(out);
}

/* text with every from replaced by to (from must occur). */
static char *replace_all(char *text, const char *from, const char *to)
{
    buf b;
    buf_init(&b);
    size_t n = strlen(from);
    const char *p = text, *hit;
    assert_non_null(strstr(text, from));
    while ((hit = strstr(p, from))) {
        buf_add(&b, p, (size_t)(hit - p));
        buf_adds(&b, to);
        p = hit + n;
    }
    buf_adds(&b, p);
    free(text);
    return buf_steal(&b);
}

/* A bounce of rcpt's latest message as Postfix (3.7) returns it:
 * tests/fixtures/dsn/postfix.eml, as that Postfix wrote it for a message
 * of baton's whose X-Baton-Key its header_checks removed, the recipient
 * and the Message-ID made rcpt's. Its queue id is none of ours. */
static char *postfix_dsn(const char *rcpt)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/dsn/postfix.eml", src);
    char *report = file_read(path, NULL);
    assert_non_null(report);
    char *mid = sent_message_id(rcpt);
    report = replace_all(report, "ann@bounce.test", rcpt);
    report = replace_all(report, "<baton.news/1/m/p1@shop.test>", mid);
    free(mid);
    char name[128];
    snprintf(name, sizeof name, "bounce-%s.eml", rcpt);
    char *f = file_write(dir, name, report);
    free(report);
    return f;
}

static void feedback_cli(const char *file, const char *want)
{
    char *out = NULL, *err = NULL;
    int rc = run_baton(dir, cfg, &out, &err, "feedback dsn %s", file);
    if (rc != 0 || !out || !strstr(out, want))
        fail_msg("feedback dsn: exit %d: %s%s", rc, out ? out : "", err ? err : "");
    free(out);
    free(err);
}

/* `baton feedback dsn` (no HTTP) enters email_bounced into journeys
 * through the inbox's spool: a running serve routes it (a wait_event
 * reacts), the same report again is a duplicate, and one read while
 * serve is down is routed when it starts. */
static void test_feedback_cli_enters_journeys(void **st)
{
    free(sh("sqlite3 %s/var/crm.db \"INSERT INTO profiles (id, email, first_name, consent_email) "
            "VALUES ('p3', 'cy@example.com', 'Cy', 1), ('p4', 'dan@example.com', 'Dan', 1)\"",
            dir));
    long before = sink_count();
    post_signup("s3", "p3");
    post_signup("s4", "p4");
    for (int k = 0; k < 1000 && sink_count() < before + 2; k++)
        nap_ms(10);
    assert_int_equal(sink_count(), before + 2);
    assert_int_equal(journey_state("bounce_watch", "active", 2), 2);
    char inbox[1024];
    snprintf(inbox, sizeof inbox, "%s/var/inbox.db", dir);
    /* serve runs: the bounce reaches cy's wait */
    char *f = postfix_dsn("cy@example.com");
    feedback_cli(f, "hard_bounce cy@example.com: suppressed, delivery j:bounce_watch:");
    assert_int_equal(journey_state("bounce_watch", "completed", 1), 1);
    json_t *o = cli_json("journey status bounce_watch --json");
    json_t *nodes = json_object_get(o, "nodes");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(nodes, "w"), "reacted")),
                     1);
    json_decref(o);
    assert_int_equal(db_wait_for(inbox, "SELECT count(*) FROM journey_spool", 0, 10000), 0);
    /* the same report again, a second later (another time of reading):
     * recorded again, its event the same, a duplicate */
    nap_ms(1100);
    feedback_cli(f, "hard_bounce cy@example.com: suppressed, delivery j:bounce_watch:");
    free(f);
    assert_int_equal(db_wait_for(inbox, "SELECT count(*) FROM journey_spool", 0, 10000), 0);
    assert_int_equal(db_long(inbox, "SELECT count(*) FROM journey_inbox WHERE type = "
                                    "'email_bounced' AND source = 'cli' AND profile = 'p3'"),
                     1);
    double dup = 0;
    for (int k = 0; k < 500 && dup != 1; k++) { /* counted just after the spool lets it go */
        json_t *fams = metrics();
        dup = sample(fams, "baton_events_total", "baton_events_total", "source", "cli", "outcome",
                     "duplicate");
        json_decref(fams);
        if (dup != 1)
            nap_ms(20);
    }
    assert_true(dup == 1);
    /* serve is down: the event waits in the spool, routed once it starts */
    kill(baton, SIGTERM);
    int ws;
    waitpid(baton, &ws, 0);
    baton = 0;
    f = postfix_dsn("dan@example.com");
    feedback_cli(f, "hard_bounce dan@example.com: suppressed, delivery j:bounce_watch:");
    free(f);
    assert_int_equal(db_long(inbox, "SELECT count(*) FROM journey_spool"), 1);
    assert_int_equal(start_serve(), 0);
    assert_int_equal(journey_state("bounce_watch", "completed", 2), 2);
    assert_int_equal(db_wait_for(inbox, "SELECT count(*) FROM journey_spool", 0, 10000), 0);
    assert_int_equal(journey_state("bounce_watch", "active", 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_html_part_carries_pixel_and_redirects),
        cmocka_unit_test(test_open_pixel),
        cmocka_unit_test(test_click_redirects_to_the_signed_url_only),
        cmocka_unit_test(test_forged_links_refused),
        cmocka_unit_test(test_wait_event_reacts_to_a_click),
        cmocka_unit_test(test_metrics_strict),
        cmocka_unit_test(test_feedback_dsn_cli),
        cmocka_unit_test(test_proof_links_record_nothing),
        cmocka_unit_test(test_tracking_needs_public_url),
        cmocka_unit_test(test_feedback_cli_enters_journeys),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
