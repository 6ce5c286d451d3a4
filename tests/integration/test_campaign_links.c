/* Campaign sends that read one-to-many links: {{#each profile.orders
 * limit 3}} in an email's text (delivered to a local SMTP sink) and
 * aggregates in a directmail export, over a small database whose every
 * rendered line is known (a profile with more orders than the limit, one
 * with an order whose store is missing, one with none); and plan's
 * file:line errors for a misspelt link inside a template. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support/fs.h"
#include "support/server.h"

static const char *bin, *src, *plugins;
static char *dir, *cfg;
static test_server srv;

static const char *sql_setup =
    "CREATE TABLE profiles (id TEXT PRIMARY KEY, email TEXT, phone TEXT, first_name TEXT, "
    "city TEXT, tier TEXT, birth_date TEXT, created_at TEXT, consent_email INTEGER, "
    "consent_sms INTEGER, consent_push INTEGER, score REAL);"
    "CREATE TABLE stores (id TEXT PRIMARY KEY, city TEXT, name TEXT);"
    "CREATE TABLE orders (id TEXT PRIMARY KEY, profile_id TEXT, store_id TEXT, amount REAL, "
    "created_at TEXT);"
    "CREATE TABLE reservations (id TEXT PRIMARY KEY, profile_id TEXT, store_id TEXT, "
    "starts_at TEXT, party INTEGER, status TEXT);"
    "INSERT INTO profiles (id, email, first_name, consent_email) VALUES "
    "('p1', 'ann@example.com', 'Ann', 1), ('p2', 'bob@example.com', 'Bob', 1), "
    "('p3', 'cy@example.com', 'Cy', 1);"
    "INSERT INTO stores VALUES ('s1', 'Lyon', 'Presqu''ile'), ('s2', 'Nantes', 'Commerce'), ('s3', "
    "'Lille', 'Gare');"
    "INSERT INTO orders VALUES ('o4', 'p1', 's2', 40, '2026-01-04T10:00:00Z'), "
    "('o1', 'p1', 's1', 10.5, '2026-01-01T10:00:00Z'), "
    "('o3', 'p1', 's1', 30.25, '2026-01-03T10:00:00Z'), "
    "('o2', 'p1', 's2', 20, '2026-01-02T10:00:00Z'), "
    "('o5', 'p3', NULL, 7, '2026-01-05T10:00:00Z');"
    /* p4 has no address (no email) and more orders than a link reads */
    "INSERT INTO profiles (id, first_name, consent_email) VALUES ('p4', 'Dee', 1);"
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1001) "
    "INSERT INTO orders SELECT printf('x%04d', i), 'p4', 's3', 1, '2025-01-01T00:00:00Z' FROM n;";

static int setup(void **st)
{
    bin = getenv("BATON_BIN");
    src = getenv("BATON_SRC");
    plugins = getenv("BATON_PLUGINS");
    if (!bin || !src || !plugins)
        return -1;
    dir = tmpdir_make("campaign-links");
    char *cmd, *out = NULL, *err = NULL;
    if (asprintf(&cmd, "mkdir -p %s/var %s/campaigns %s/smtp && sqlite3 %s/var/crm.db \"%s\"", dir,
                 dir, dir, dir, sql_setup) < 0)
        abort();
    int rc = run_capture(cmd, &out, &err);
    free(cmd);
    free(out);
    free(err);
    if (rc != 0)
        return -1;
    char sinkdir[1024];
    snprintf(sinkdir, sizeof sinkdir, "%s/smtp", dir);
    char *argv[] = {"/usr/bin/python3", NULL, "--dir", sinkdir, NULL};
    if (asprintf(&argv[1], "%s/tests/support/smtp_sink.py", src) < 0)
        abort();
    rc = server_start_ready(&srv, argv, 15000);
    free(argv[1]);
    if (rc != 0)
        return -1;
    char *text;
    if (asprintf(&text,
                 "baton: { data_dir = \"var\"; plugin_path = [ \"%s\" ]; log = { level = \"warn\"; "
                 "}; };\n"
                 "sources: { crm: { plugin = \"source_sqlite\"; path = \"var/crm.db\"; schema = "
                 "\"%s/conf/schema.cfg\"; }; };\n"
                 "profiles = \"crm\";\n"
                 "channels: {\n"
                 "  mail: { plugin = \"channel_directmail\"; dir = \"var/exports\"; };\n"
                 "  email: { plugin = \"channel_email\"; port = %d; from = \"Shop "
                 "<news@example.com>\";\n"
                 "           address = \"email\"; consent = \"consent_email\"; };\n"
                 "};\n"
                 "campaigns = [ \"campaigns\" ];\n",
                 plugins, src, srv.port) < 0)
        abort();
    cfg = file_write(dir, "baton.cfg", text);
    free(text);
    return 0;
}

static int teardown(void **st)
{
    server_stop(&srv);
    tmpdir_remove(dir);
    free(dir);
    free(cfg);
    return 0;
}

/* "recipient|decoded text part" of every message the sink stored, one a
 * line, sorted; the text's line ends as "\n". */
static char *sink_messages(void)
{
    char *cmd, *out = NULL, *err = NULL;
    if (asprintf(&cmd,
                 "/usr/bin/python3 -c \"import email, json, sys\n"
                 "res = []\n"
                 "for l in open('%s/smtp/log.jsonl'):\n"
                 "    e = json.loads(l)\n"
                 "    m = email.message_from_bytes(open('%s/smtp/' + e['file'], 'rb').read())\n"
                 "    t = [p for p in m.walk() if p.get_content_type() == 'text/plain'][0]\n"
                 "    body = t.get_payload(decode=True).decode().replace(chr(13), '')\n"
                 "    res.append(e['rcpt_tos'][0] + '|' + body.replace(chr(10), '/'))\n"
                 "print(chr(10).join(sorted(res)))\"",
                 dir, dir) < 0)
        abort();
    int rc = run_capture(cmd, &out, &err);
    if (rc != 0)
        fail_msg("reading the sink: %s", err);
    free(cmd);
    free(err);
    return out;
}

static int by_text(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* An export file with its rows (after the header) sorted: a send's rows
 * come in no promised order. */
static char *export_sorted(const char *name)
{
    char *path;
    if (asprintf(&path, "%s/var/exports/%s", dir, name) < 0)
        abort();
    char *text = file_read(path, NULL);
    free(path);
    if (!text)
        return NULL;
    char *lines[64];
    size_t n = 0;
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l && n < 64;
         l = strtok_r(NULL, "\n", &save))
        lines[n++] = l;
    if (n > 1)
        qsort(lines + 1, n - 1, sizeof *lines, by_text);
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += strlen(lines[i]) + 1;
    char *out = calloc(1, len + 1);
    for (size_t i = 0; i < n; i++) {
        strcat(out, lines[i]);
        strcat(out, "\n");
    }
    free(text);
    return out;
}

static void test_each_and_aggregates_in_sends(void **st)
{
    char *path = file_write(
        dir, "campaigns/links.cfg",
        "campaign: {\n  name = \"links\";\n  activities = (\n"
        "    { id = \"all\"; type = \"build_audience\"; dimension = \"profiles\"; },\n"
        "    { id = \"m\"; type = \"send\"; channel = \"email\"; input = \"all\";\n"
        "      subject = \"{{ first_name }}, your {{ count(profile.orders) }} orders\";\n"
        "      text = \"Hi {{ profile.first_name }}: {{ count(profile.orders) }} orders\\n"
        "{{#each profile.orders limit 3}}{{ @index }}. {{ id }} {{ amount }} in {{ store.city "
        "}}\\n{{/each}}"
        "Total {{ sum(orders.amount) }}\"; },\n"
        "    { id = \"x\"; type = \"send\"; channel = \"mail\"; input = \"all\";\n"
        "      columns = [ \"id\", \"count(profile.orders)\", \"count(orders where amount > "
        "15)\",\n"
        "                  \"max(orders.created_at)\" ]; },\n"
        "    { id = \"o\"; type = \"change_dimension\"; input = \"all\"; to = \"orders\"; filter = "
        "\"amount > 1\"; },\n"
        "    { id = \"y\"; type = \"send\"; channel = \"mail\"; input = \"o\";\n"
        "      columns = [ \"id\", \"count(profile.orders)\", \"count(store.orders)\" ]; }\n"
        "  );\n};\n");
    char *out, *err;
    int rc = run_baton(NULL, cfg, &out, &err, "campaign run links");
    if (rc != 0)
        fail_msg("run failed (%d): %s", rc, err);
    /* p4's 1001 orders: the first 1000 by key are read, with a warning */
    if (!strstr(err, "profile p4: 'profile.orders' has more than 1000 rows in orders"))
        fail_msg("no warning for a cut link in:\n%s", err);
    free(out);
    free(err);
    char *got = sink_messages();
    const char *want = "ann@example.com|Hi Ann: 4 orders/0. o1 10.5 in Lyon/1. o2 20 in Nantes/"
                       "2. o3 30.25 in Lyon/Total 100.75/\n"
                       "bob@example.com|Hi Bob: 0 orders/Total /\n"
                       "cy@example.com|Hi Cy: 1 orders/0. o5 7 in /Total 7/\n";
    if (strcmp(got, want) != 0)
        fail_msg("messages:\n%s\nwanted:\n%s", got, want);
    free(got);
    char *csv = export_sorted("links-1-x.csv");
    assert_non_null(csv);
    assert_string_equal(csv, "id,count(profile.orders),count(orders where amount > 15),"
                             "max(orders.created_at)\r\n"
                             "p1,4,3,2026-01-04T10:00:00Z\r\n"
                             "p2,0,0,\r\n"
                             "p3,1,0,2026-01-05T10:00:00Z\r\n"
                             "p4,1000,0,2025-01-01T00:00:00Z\r\n");
    free(csv);
    /* one row per order: links reached through its many-to-one links */
    csv = export_sorted("links-1-y.csv");
    assert_non_null(csv);
    assert_string_equal(csv, "id,count(profile.orders),count(store.orders)\r\n"
                             "o1,4,2\r\no2,4,2\r\no3,4,2\r\no4,4,2\r\no5,1,0\r\n");
    free(csv);
    unlink(path);
    free(path);
}

static void test_plan_reports_template_errors(void **st)
{
    char *path =
        file_write(dir, "campaigns/bad.cfg",
                   "campaign: {\n  name = \"bad\";\n  activities = (\n"
                   "    { id = \"all\"; type = \"build_audience\"; dimension = \"profiles\"; },\n"
                   "    { id = \"m\"; type = \"send\"; channel = \"email\"; input = \"all\";\n"
                   "      subject = \"Hi\";\n"
                   "      text = \"{{#each profile.ordrs limit 3}}{{ amount }}{{/each}}\"; }\n"
                   "  );\n};\n");
    char *out, *err;
    assert_int_equal(run_baton(NULL, cfg, &out, &err, "campaign plan bad"), 2);
    if (!strstr(err, "bad.cfg:7: text: 1:"))
        fail_msg("no file:line in:\n%s", err);
    assert_non_null(strstr(err, "unknown field 'ordrs' in profiles (did you mean 'orders'?)"));
    free(out);
    free(err);
    unlink(path);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_and_aggregates_in_sends),
        cmocka_unit_test(test_plan_reports_template_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
