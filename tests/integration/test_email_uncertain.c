/* An SMTP server that takes a message and never answers its final dot
 * (tests/support/smtp_sink.py --hang): RFC 5321 §6.1 says the message may
 * have been delivered, so after `dot_timeout` it is recorded uncertain,
 * never failed, and not sent again — the server holds it once, `campaign
 * runs` counts it uncertain and the run exits 1, as for a message a crash
 * caught on the wire. With resend_uncertain = true it is sent again. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "support/fs.h"
#include "support/server.h"

static char *dir, *cfg, *sinkdir;
static test_server smtp;

static int baton(char **out, char **err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = run_baton_v(NULL, cfg, out, err, fmt, ap);
    va_end(ap);
    return rc;
}

/* one value read from var/<db> */
static char *sql_text(const char *db, const char *sql)
{
    char *path;
    if (asprintf(&path, "%s/var/%s", dir, db) < 0)
        abort();
    char *out = db_print(path, sql);
    free(path);
    if (!out)
        fail_msg("sqlite3 failed: %s", sql);
    return out;
}

static long long sql_count(const char *sql)
{
    char *t = sql_text("state.db", sql);
    long long n = atoll(t);
    free(t);
    return n;
}

/* the messages the sink stored for recipient, and for everyone */
static size_t received(const char *recipient, size_t *all)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/log.jsonl", sinkdir);
    char *log = file_read(path, NULL);
    char want[300];
    snprintf(want, sizeof want, "\"rcpt_tos\": [\"%s\"]", recipient);
    size_t n = 0;
    *all = 0;
    for (char *p = log; p && (p = strstr(p, "\"rcpt_tos\": [\"")); p++) {
        (*all)++;
        n += strncmp(p, want, strlen(want)) == 0;
    }
    free(log);
    return n;
}

static void write_config(int port, const char *extra)
{
    char *text;
    if (asprintf(&text,
                 "baton: { data_dir = \"var\"; plugin_path = [ \"%s\" ]; log = { level = "
                 "\"warn\"; }; };\n"
                 "sources: { crm: { plugin = \"source_sqlite\"; path = \"var/crm.db\"; schema = "
                 "\"%s/conf/schema.cfg\"; }; };\n"
                 "profiles = \"crm\";\n"
                 "channels: { email: { plugin = \"channel_email\"; port = %d; from = \"Shop "
                 "<news@example.com>\";\n"
                 "  address = \"email\"; consent = \"consent_email\"; connections = 1;\n"
                 "  dot_timeout = \"1s\"; retries = 3; retry_backoff = \"50ms\"; %s }; };\n"
                 "campaigns = [ \"campaigns\" ];\n",
                 getenv("BATON_PLUGINS"), getenv("BATON_SRC"), port, extra) < 0)
        abort();
    free(cfg);
    cfg = file_write(dir, "baton.cfg", text);
    free(text);
}

static int setup(void **st)
{
    dir = tmpdir_make("emailunsure");
    if (asprintf(&sinkdir, "%s/smtp", dir) < 0)
        abort();
    char *cd;
    if (asprintf(&cd, "mkdir -p %s/campaigns %s", dir, sinkdir) < 0 || system(cd) != 0)
        abort();
    free(cd);
    write_config(25, "");
    char *out, *err;
    int rc = baton(&out, &err, "sample-data --profiles 20 --seed 5");
    free(out);
    free(err);
    free(file_write(dir, "campaigns/c.cfg",
                    "campaign: { name = \"c\"; activities = (\n"
                    "  { id = \"a\"; type = \"build_audience\"; dimension = \"profiles\"; },\n"
                    "  { id = \"m\"; type = \"send\"; channel = \"email\"; input = \"a\";\n"
                    "    subject = \"Hi {{ first_name }}\"; text = \"Hello\"; } ); };\n"));
    return rc;
}

static int teardown(void **st)
{
    server_stop(&smtp);
    if (!getenv("BATON_KEEP_TMP"))
        tmpdir_remove(dir);
    free(dir);
    free(cfg);
    free(sinkdir);
    cfg = NULL;
    return 0;
}

/* The sink, silent after the final dot of the first `times` messages to
 * the first profile that may be written to (0: all of them); that
 * profile's address in addr. The campaign's planned messages. */
static long long start_on(const char *campaign, char *addr, size_t addrlen, int times,
                          const char *extra);
static long long start(char *addr, size_t addrlen, int times, const char *extra)
{
    return start_on("c", addr, addrlen, times, extra);
}
static long long start_on(const char *campaign, char *addr, size_t addrlen, int times,
                          const char *extra)
{
    char *a = sql_text("crm.db", "SELECT email FROM profiles WHERE consent_email = 1 AND email IS "
                                 "NOT NULL ORDER BY id LIMIT 1");
    snprintf(addr, addrlen, "%s", a);
    free(a);
    assert_non_null(strchr(addr, '@'));
    char hang[300], src[1024];
    if (times)
        snprintf(hang, sizeof hang, "%s=%d", addr, times);
    else
        snprintf(hang, sizeof hang, "%s", addr);
    snprintf(src, sizeof src, "%s/tests/support/smtp_sink.py", getenv("BATON_SRC"));
    char *argv[] = {"/usr/bin/python3", src, "--dir", sinkdir, "--hang", hang, NULL};
    assert_int_equal(server_start_ready(&smtp, argv, 15000), 0);
    write_config(smtp.port, extra);
    char *out, *err;
    assert_int_equal(baton(&out, &err, "campaign plan %s --json", campaign), 0);
    const char *m = strstr(out, "\"m\": ");
    assert_non_null(m);
    long long planned = atoll(m + strlen("\"m\": "));
    assert_true(planned > 0);
    free(out);
    free(err);
    return planned;
}

static void test_silent_after_the_dot_is_uncertain(void **st)
{
    char addr[256];
    long long planned = start(addr, sizeof addr, 0, "");
    char *out, *err;
    int rc = baton(&out, &err, "campaign run c");
    print_message("exit %d\n%s", rc, err);
    /* the run ends once nothing waits to be retried: what the sink holds
     * now is all it will ever get */
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err, "campaign c: run 1 done with 0 message(s) failed and 1 uncertain"));
    free(out);
    free(err);

    char q[512];
    snprintf(q, sizeof q,
             "SELECT status || '|' || attempts || '|' || reason FROM deliveries WHERE "
             "recipient = '%s'",
             addr);
    char *row = sql_text("state.db", q);
    assert_string_equal(row, "uncertain|1|DATA: no reply within 1 s after the final dot (it may "
                             "have been delivered)");
    free(row);
    assert_int_equal(sql_count("SELECT count(*) FROM deliveries WHERE status = 'sent'"),
                     planned - 1);
    assert_int_equal(sql_count("SELECT count(*) FROM deliveries WHERE status = 'failed'"), 0);
    size_t all;
    assert_int_equal(received(addr, &all), 1); /* once, never again */
    assert_int_equal((long long)all, planned);

    /* campaign runs: uncertain, apart from failed */
    assert_int_equal(baton(&out, &err, "campaign runs c"), 0);
    char want[128];
    snprintf(want, sizeof want, "sent %lld, failed 0,", planned - 1);
    assert_non_null(strstr(out, want));
    assert_non_null(strstr(out, ", uncertain 1"));
    free(out);
    free(err);
    assert_int_equal(baton(&out, &err, "campaign runs c --json"), 0);
    json_t *j = json_loads(out, 0, NULL);
    assert_non_null(j);
    json_t *run = json_array_get(json_object_get(j, "runs"), 0);
    assert_string_equal(json_string_value(json_object_get(run, "status")), "done");
    json_t *m = json_array_get(json_object_get(run, "activities"), 1);
    assert_string_equal(json_string_value(json_object_get(m, "id")), "m");
    assert_int_equal(json_integer_value(json_object_get(m, "uncertain")), 1);
    assert_int_equal(json_integer_value(json_object_get(m, "failed")), 0);
    assert_int_equal(json_integer_value(json_object_get(m, "sent")), planned - 1);
    json_decref(j);
    free(out);
    free(err);
}

/* resend_uncertain = true: the provider drops repeats, so the message goes
 * again after its backoff; the second time the server answers. */
static void test_resend_uncertain_sends_it_again(void **st)
{
    char addr[256];
    long long planned = start(addr, sizeof addr, 1, "resend_uncertain = true;");
    char *out, *err;
    int rc = baton(&out, &err, "campaign run c");
    print_message("exit %d\n%s", rc, err);
    assert_int_equal(rc, 0);
    free(out);
    free(err);
    char q[512];
    snprintf(q, sizeof q, "SELECT status || '|' || attempts FROM deliveries WHERE recipient = '%s'",
             addr);
    char *row = sql_text("state.db", q);
    assert_string_equal(row, "sent|2");
    free(row);
    assert_int_equal(sql_count("SELECT count(*) FROM deliveries WHERE status = 'sent'"), planned);
    size_t all;
    assert_int_equal(received(addr, &all), 2);
    assert_int_equal((long long)all, planned + 1);
}

/* A send none of whose messages is known to have gone out (the one
 * profile it writes to got no reply after the dot) fails the run, saying
 * so with the counts and the reason. */
static void test_nothing_confirmed_fails_the_run(void **st)
{
    char addr[256];
    char *a = sql_text("crm.db", "SELECT id FROM profiles WHERE consent_email = 1 AND email IS "
                                 "NOT NULL ORDER BY id LIMIT 1");
    char text[512];
    snprintf(text, sizeof text,
             "campaign: { name = \"one\"; activities = (\n"
             "  { id = \"a\"; type = \"build_audience\"; dimension = \"profiles\"; filter = "
             "\"id == '%s'\"; },\n"
             "  { id = \"m\"; type = \"send\"; channel = \"email\"; input = \"a\";\n"
             "    subject = \"Hi\"; text = \"Hello\"; } ); };\n",
             a);
    free(a);
    free(file_write(dir, "campaigns/one.cfg", text));
    assert_int_equal(start_on("one", addr, sizeof addr, 0, ""), 1);
    char *out, *err;
    int rc = baton(&out, &err, "campaign run one");
    print_message("exit %d\n%s", rc, err);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err, "activity 'm': no message is known to have gone out: 0 sent, 0 "
                                "failed, 0 capped, 0 no address, 0 no consent, 1 uncertain; the "
                                "first: DATA: no reply within 1 s after the final dot (it may "
                                "have been delivered)"));
    free(out);
    free(err);
    assert_int_equal(sql_count("SELECT count(*) FROM deliveries WHERE status = 'uncertain'"), 1);
    size_t all;
    assert_int_equal(received(addr, &all), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_silent_after_the_dot_is_uncertain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resend_uncertain_sends_it_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nothing_confirmed_fails_the_run, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
