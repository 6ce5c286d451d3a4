/* Hostile and unlucky input through the binary: an SMTP server that
 * answers 421 to DATA and hangs up (the CLI used to die of SIGPIPE, exit
 * 141, its summary never printed); expressions and templates nested or
 * chained far past any real file (a stack overflow in check); a secret
 * put under the wrong key (it used to be echoed in the error). */
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

static char *dir, *cfg;

static int baton(char **out, char **err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = run_baton_v(NULL, cfg, out, err, fmt, ap);
    va_end(ap);
    return rc;
}

static long long sql_count(const char *db, const char *sql)
{
    char *cmd, *out = NULL;
    if (asprintf(&cmd, "sqlite3 %s \"%s\"", db, sql) < 0)
        abort();
    if (run_capture(cmd, &out, NULL) != 0)
        fail_msg("sqlite3 failed: %s", sql);
    long long n = atoll(out);
    free(cmd);
    free(out);
    return n;
}

static void write_config(int smtp_port)
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
                 "  address = \"email\"; consent = \"consent_email\"; retries = 0; }; };\n"
                 "campaigns = [ \"campaigns\" ];\n",
                 getenv("BATON_PLUGINS"), getenv("BATON_SRC"), smtp_port) < 0)
        abort();
    free(cfg);
    cfg = file_write(dir, "baton.cfg", text);
    free(text);
}

static int setup(void **st)
{
    dir = tmpdir_make("hostile");
    write_config(9);
    char *cd;
    if (asprintf(&cd, "mkdir -p %s/campaigns", dir) < 0 || system(cd) != 0)
        abort();
    free(cd);
    char *out, *err;
    int rc = baton(&out, &err, "sample-data --profiles 300 --seed 3");
    free(out);
    free(err);
    return rc;
}

static int teardown(void **st)
{
    if (!getenv("BATON_KEEP_TMP"))
        tmpdir_remove(dir);
    free(dir);
    free(cfg);
    cfg = NULL;
    return 0;
}

/* The server refuses DATA with 421 and closes while baton writes the
 * message: each such write fails (EPIPE), the process goes on, and the
 * run ends with its summary and a final row for every message; none went
 * out, so the run fails with the counts. */
static void test_smtp_hangup_after_data(void **st)
{
    char script[1024];
    snprintf(script, sizeof script, "%s/tests/support/smtp_hangup.py", getenv("BATON_SRC"));
    char *argv[] = {"/usr/bin/python3", script, NULL};
    test_server smtp;
    assert_int_equal(server_start_ready(&smtp, argv, 10000), 0);
    write_config(smtp.port);
    free(file_write(dir, "campaigns/c.cfg",
                    "campaign: { name = \"c\"; activities = (\n"
                    "  { id = \"a\"; type = \"build_audience\"; dimension = \"profiles\"; },\n"
                    "  { id = \"m\"; type = \"send\"; channel = \"email\"; input = \"a\";\n"
                    "    subject = \"Hi {{ first_name }}\";\n"
                    "    text = \"Hello {{ first_name }}, a text long enough to be more than "
                    "one write: lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do "
                    "eiusmod tempor incididunt ut labore et dolore magna aliqua.\"; } ); };\n"));
    char *out, *err;
    assert_int_equal(baton(&out, &err, "campaign plan c --json"), 0);
    const char *m = strstr(out, "\"m\": ");
    assert_non_null(m);
    long long planned = atoll(m + strlen("\"m\": "));
    assert_true(planned > 100);
    free(out);
    free(err);

    int rc = baton(&out, &err, "campaign run c");
    server_stop(&smtp);
    print_message("exit %d\n%s", rc, err);
    assert_int_equal(rc, 1); /* not 141: killed by SIGPIPE */
    assert_non_null(strstr(err, "activity 'm': every message failed: 0 sent"));
    char db[1024];
    snprintf(db, sizeof db, "%s/var/state.db", dir);
    long long failed = sql_count(db, "SELECT count(*) FROM deliveries WHERE status = 'failed'");
    long long uncertain =
        sql_count(db, "SELECT count(*) FROM deliveries WHERE status = 'uncertain'");
    /* nothing lost: every message has its final row, none went out */
    assert_int_equal(sql_count(db, "SELECT count(*) FROM deliveries"), planned);
    assert_int_equal(failed + uncertain, planned);
    assert_int_equal(sql_count(db, "SELECT count(*) FROM deliveries WHERE sending = 1"), 0);
    char want[64];
    snprintf(want, sizeof want, "0 sent, 0 already sent, %lld failed", failed);
    assert_non_null(strstr(err, want));
    free(out);
    free(err);
}

/* baton check on a filter of 20,000 'or' terms and a text of 100,000
 * nested {{#if}}: an error each (exit 2), not a stack overflow. */
static void test_check_deep_files(void **st)
{
    enum { TERMS = 20000, IFS = 100000 };
    char *text = malloc((size_t)TERMS * 24 + (size_t)IFS * 20 + 4096), *p = text;
    p += sprintf(p, "campaign: { name = \"deep\"; activities = (\n"
                    "  { id = \"a\"; type = \"build_audience\"; dimension = \"profiles\";\n"
                    "    filter = \"tier == 'gold'");
    for (int i = 1; i < TERMS; i++)
        p += sprintf(p, " or tier == 'gold'");
    sprintf(p, "\"; } ); };\n");
    char *path = file_write(dir, "campaigns/deep.cfg", text);
    char *out, *err;
    int rc = baton(&out, &err, "check");
    print_message("%.600s\n", err);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(err, "deep.cfg:3: filter: 1:8980: expression too deep (more than 500 "
                                "operators one inside another"));
    free(out);
    free(err);

    p = text;
    p += sprintf(p, "campaign: { name = \"deep\"; activities = (\n"
                    "  { id = \"a\"; type = \"build_audience\"; dimension = \"profiles\"; },\n"
                    "  { id = \"m\"; type = \"send\"; channel = \"email\"; input = \"a\";"
                    " subject = \"Hi\";\n    text = \"");
    for (int i = 0; i < IFS; i++)
        p += sprintf(p, "{{#if true}}");
    p += sprintf(p, "x");
    for (int i = 0; i < IFS; i++)
        p += sprintf(p, "{{/if}}");
    sprintf(p, "\"; } ); };\n");
    free(file_write(NULL, path, text));
    free(text);
    rc = baton(&out, &err, "check");
    print_message("%.600s\n", err);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(err, "deep.cfg:4: text: 1:1201: {{#if}} nested too deeply (more than "
                                "100 blocks one inside another)"));
    free(out);
    free(err);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_smtp_hangup_after_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_deep_files, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
