/* The main configuration: structure, ${env:...}, relative paths, caps, and
 * plugin settings checked against key maps — each error with its exact
 * words on its own file:line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hostapi/hostapi.h"
#include "plugin/app.h"
#include "base/buf.h"
#include "support/fs.h"

static char *dir;

static int setup(void **st)
{
    dir = tmpdir_make("config");
    return 0;
}

static int teardown(void **st)
{
    tmpdir_remove(dir);
    free(dir);
    return 0;
}

/* Write the config, load it with flags, return the diagnostics printed as
 * text (one "file:line: message" per line), with the temp dir shown as
 * DIR so expectations read plainly. */
static char *load(const char *text, unsigned flags, app *a)
{
    char *path = file_write(dir, "baton.cfg", text);
    diag d;
    diag_init(&d);
    app_open(a, path, flags, &d);
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    diag_print(&d, f);
    fclose(f);
    diag_free(&d);
    free(path);
    /* replace the temp dir with DIR */
    buf b;
    buf_init(&b);
    size_t dl = strlen(dir);
    for (const char *p = out; *p;) {
        if (strncmp(p, dir, dl) == 0) {
            buf_adds(&b, "DIR");
            p += dl;
        } else {
            buf_addc(&b, *p++);
        }
    }
    free(out);
    return b.data ? buf_steal(&b) : strdup("");
}

static void expect(const char *text, unsigned flags, const char *want)
{
    app a;
    char *got = load(text, flags, &a);
    assert_string_equal(got, want);
    free(got);
    app_close(&a);
}

static void test_minimal_is_valid(void **st)
{
    app a;
    char *got = load("baton: { data_dir = \"var\"; };\n", 0, &a);
    assert_string_equal(got, "");
    char want[512];
    snprintf(want, sizeof want, "%s/var", dir);
    assert_string_equal(a.conf.data_dir, want);
    assert_int_equal(a.conf.log_level, BATON_LOG_INFO);
    free(got);
    app_close(&a);
}

static void test_syntax_error_has_line(void **st)
{
    expect("baton: {\n  data_dir = ;\n};\n", 0, "DIR/baton.cfg:2: syntax error\n");
}

static void test_unknown_settings_suggest(void **st)
{
    expect("baton: { data_dir = \"var\"; };\nchanels: { };\ncaps: { per_profil = (); };\n", 0,
           "DIR/baton.cfg:2: unknown setting 'chanels' (did you mean 'channels'?); known "
           "settings: baton, sources, profiles, channels, actions, events, caps, campaigns, "
           "journeys, http\n"
           "DIR/baton.cfg:3: caps: unknown key 'per_profil' (did you mean 'per_profile'?); "
           "known keys: per_profile, quiet_hours\n");
}

/* The http block: every mistake with its line, secrets never echoed. */
static void test_http_block(void **st)
{
    expect("baton: { data_dir = \"var\"; };\n"
           "http = { listen = \"8080\"; tls_cert = \"c.pem\"; threads = 0;\n"
           "  tokens = ( { name = \"a\"; secret = \"short\"; scopes = [ \"reed\" ]; },\n"
           "             { name = \"b\"; secret = \"0123456789abcdef0\"; scopes = [ ]; },\n"
           "             { secret = \"0123456789abcdef1\"; scopes = [ \"read\" ]; bogus = 1; } ); "
           "};\n",
           0,
           "DIR/baton.cfg:2: http: threads = 0 is out of range (1 to 64)\n"
           "DIR/baton.cfg:2: http.listen = \"8080\": expected address:port, e.g. "
           "\"127.0.0.1:8080\" or \"[::1]:8080\"\n"
           "DIR/baton.cfg:2: http: tls_cert and tls_key go together (set both for HTTPS, neither "
           "for plain HTTP)\n"
           "DIR/baton.cfg:3: http.tokens[0].scopes: unknown scope 'reed' (did you mean 'read'?); "
           "scopes: events:write, campaigns:run, read, admin\n"
           "DIR/baton.cfg:3: http.tokens[0] (a): the secret is shorter than 16 characters; use a "
           "long random one (e.g. openssl rand -hex 32)\n"
           "DIR/baton.cfg:4: http.tokens[1] (b): no scopes; give at least one of events:write, "
           "campaigns:run, read, admin\n"
           "DIR/baton.cfg:5: http.tokens[2]: unknown key 'bogus'; known keys: name, secret, "
           "scopes\n"
           "DIR/baton.cfg:5: http.tokens[2]: missing required key 'name'\n");
    app a;
    char *got = load("http = { listen = \"127.0.0.1:0\"; tokens = ( { name = \"ops\"; secret = "
                     "\"0123456789abcdef0\"; scopes = [ \"read\", \"admin\" ]; } ); };\n",
                     0, &a);
    assert_string_equal(got, "");
    assert_true(a.conf.http.on);
    assert_string_equal(a.conf.http.host, "127.0.0.1");
    assert_int_equal(a.conf.http.port, 0);
    assert_int_equal(a.conf.http.ntokens, 1);
    assert_int_equal(a.conf.http.tokens[0].scopes, HTTP_SCOPE_READ | HTTP_SCOPE_ADMIN);
    assert_int_equal(a.conf.http.max_events, 1000);
    assert_int_equal(a.conf.http.timeout_ms, 30000);
    free(got);
    app_close(&a);
    got = load("baton: { data_dir = \"var\"; };\n", 0, &a);
    assert_false(a.conf.http.on);
    free(got);
    app_close(&a);
}

static void test_baton_section_types(void **st)
{
    expect("baton: {\n data_dir = 3;\n log = { level = \"loud\"; format = \"xml\"; };\n};\n", 0,
           "DIR/baton.cfg:2: baton: data_dir must be a string, not an integer\n"
           "DIR/baton.cfg:3: baton.log: level = \"loud\" is not one of: error, warn, info, debug\n"
           "DIR/baton.cfg:3: baton.log: format = \"xml\" is not one of: text, json\n");
}

static void test_env_substitution(void **st)
{
    setenv("BATON_TEST_DIR", "/srv/baton", 1);
    unsetenv("BATON_TEST_MISSING");
    app a;
    char *got = load("baton: { data_dir = \"${env:BATON_TEST_DIR}/var\"; };\n", 0, &a);
    assert_string_equal(got, "");
    assert_string_equal(a.conf.data_dir, "/srv/baton/var");
    free(got);
    app_close(&a);
    expect("baton: {\n  data_dir = \"${env:BATON_TEST_MISSING}\";\n};\n", 0,
           "DIR/baton.cfg:2: environment variable 'BATON_TEST_MISSING' is not set (used by "
           "'data_dir')\n");
}

/* "${env:NAME}" under an int key reads the variable as an int; a value
 * that is not one names the variable (and hides a long value). */
static void test_env_typed(void **st)
{
    setenv("BATON_TEST_MAX", "4", 1);
    setenv("BATON_TEST_BAD", "four", 1);
    setenv("BATON_TEST_BIG", "99999999999999999999x", 1);
    app a;
    char *got =
        load("caps: {\n per_profile = ( { channel = \"*\"; max = \"${env:BATON_TEST_MAX}\"; "
             "per = \"1d\"; } );\n};\n",
             0, &a);
    assert_string_equal(got, "");
    assert_int_equal(a.conf.caps[0].max, 4);
    free(got);
    app_close(&a);
    expect("caps: {\n per_profile = ( { channel = \"*\"; max = \"${env:BATON_TEST_BAD}\"; "
           "per = \"1d\"; } );\n};\n",
           0,
           "DIR/baton.cfg:2: caps.per_profile[0]: max = \"${env:BATON_TEST_BAD}\": the variable "
           "holds \"four\", which is not an integer\n");
    expect("caps: {\n per_profile = ( { channel = \"*\"; max = \"${env:BATON_TEST_BIG}\"; "
           "per = \"1d\"; } );\n};\n",
           0,
           "DIR/baton.cfg:2: caps.per_profile[0]: max = \"${env:BATON_TEST_BIG}\": the variable "
           "holds (a value of 21 characters, not shown), which is not an integer\n");
    /* a literal string under an int key is still a type error */
    expect("caps: {\n per_profile = ( { channel = \"*\"; max = \"4\"; per = \"1d\"; } );\n};\n", 0,
           "DIR/baton.cfg:2: caps.per_profile[0]: max must be an integer, not a string\n");
}

static void test_relative_paths(void **st)
{
    app a;
    char *got =
        load("baton: { data_dir = \"/abs/var\"; plugin_path = [ \"plugins\", \"/opt/p\" ]; };\n"
             "campaigns = [ \"campaigns\" ];\njourneys = \"journeys\";\n",
             0, &a);
    /* folders that are not there are said, not fatal */
    assert_string_equal(got, "DIR/baton.cfg:1: warning: baton: plugin_path[0] \"DIR/plugins\" is "
                             "not a folder\n"
                             "DIR/baton.cfg:1: warning: baton: plugin_path[1] \"/opt/p\" is not a "
                             "folder\n");
    char want[512];
    assert_string_equal(a.conf.data_dir, "/abs/var");
    assert_int_equal(a.conf.nplugin_path, 2);
    snprintf(want, sizeof want, "%s/plugins", dir);
    assert_string_equal(a.conf.plugin_path[0], want);
    assert_string_equal(a.conf.plugin_path[1], "/opt/p");
    snprintf(want, sizeof want, "%s/campaigns", dir);
    assert_string_equal(a.conf.campaigns[0], want);
    snprintf(want, sizeof want, "%s/journeys", dir);
    assert_string_equal(a.conf.journeys[0], want);
    free(got);
    app_close(&a);
}

static void test_uses_and_profiles(void **st)
{
    expect("sources: { crm: { path = \"x.db\"; }; };\n"
           "profiles = \"crn\";\n"
           "channels: { sms: { plugin = \"x\"; enabled = \"no\"; }; };\n"
           "actions: { a: { plugin = \"y\"; enabled = false; }; };\n",
           0,
           "DIR/baton.cfg:1: sources.crm: missing required key 'plugin' (the plugin that runs "
           "it, e.g. \"source_...\")\n"
           "DIR/baton.cfg:3: channels.sms: enabled must be true or false\n"
           "DIR/baton.cfg:4: actions.a: 'enabled' applies to channels only\n"
           "DIR/baton.cfg:2: profiles = \"crn\" names no configured source (did you mean "
           "'crm'?)\n");
}

static void test_empty_paths_refused(void **st)
{
    expect("baton: {\n data_dir = \"\";\n plugin_path = [ \"\" ];\n};\n", 0,
           "DIR/baton.cfg:2: baton: data_dir must name a file or folder, not be empty\n"
           "DIR/baton.cfg:3: baton: plugin_path[0] is empty; name a folder\n");
}

static void test_caps(void **st)
{
    app a;
    char *got = load(
        "caps: {\n per_profile = ( { channel = \"*\"; max = 3; per = \"7d\"; } );\n"
        " quiet_hours = { from = \"21:00\"; to = \"08:00\"; timezone = \"Europe/Paris\"; };\n};\n",
        0, &a);
    assert_string_equal(got, "");
    assert_int_equal(a.conf.ncaps, 1);
    assert_string_equal(a.conf.caps[0].channel, "*");
    assert_int_equal(a.conf.caps[0].max, 3);
    assert_int_equal(a.conf.caps[0].per_s, 7 * 86400);
    assert_true(a.conf.quiet);
    assert_int_equal(a.conf.quiet_from_min, 21 * 60);
    assert_int_equal(a.conf.quiet_to_min, 8 * 60);
    assert_string_equal(a.conf.quiet_tz, "Europe/Paris");
    free(got);
    app_close(&a);
    expect(
        "channels: { email: { plugin = \"x\"; enabled = false; }; };\n"
        "caps: {\n per_profile = ( { channel = \"emial\"; max = 1; per = \"250ms\"; } );\n"
        " quiet_hours = { from = \"21:00\"; to = \"08:00\"; timezone = \"Mars/Olympus\"; };\n};\n",
        0,
        "DIR/baton.cfg:3: caps.per_profile[0]: per = \"250ms\" is shorter than a second\n"
        "DIR/baton.cfg:3: caps.per_profile[0]: channel = \"emial\" names no configured channel "
        "(did you mean 'email'?)\n"
        "DIR/baton.cfg:4: caps.quiet_hours: timezone = \"Mars/Olympus\" is not a known time "
        "zone; expected a name such as \"Europe/Paris\" or \"UTC\"\n");
    expect("caps: {\n per_profile = ( { channel = \"*\"; per = \"soon\"; } );\n"
           " quiet_hours = { from = \"25:00\"; to = \"08:00\"; };\n};\n",
           0,
           "DIR/baton.cfg:2: caps.per_profile[0]: per = \"soon\" is not a duration; expected a "
           "duration such as \"90s\", \"15m\", \"12h\", \"7d\"\n"
           "DIR/baton.cfg:2: caps.per_profile[0]: missing required key 'max'\n"
           "DIR/baton.cfg:3: caps.quiet_hours: from = \"25:00\" is not a time of day; expected "
           "\"HH:MM\"\n");
}

/* ---- plugin settings, against the fixtures' key maps ---- */

static char *with_fixtures(const char *body)
{
    const char *f = getenv("BATON_FIXTURES");
    char *s;
    if (asprintf(&s, "baton: { plugin_path = [ \"%s\" ]; };\n%s", f ? f : "build/tests/fixtures",
                 body) < 0)
        abort();
    return s;
}

static void test_plugin_settings_all_errors(void **st)
{
    char *cfg = with_fixtures("actions: {\n"
                              "  a: { plugin = \"fx_action\";\n"
                              "       urll = \"http://x\";\n"
                              "       port = \"80\";\n"
                              "       ratio = 70000;\n"
                              "       mode = \"turbo\";\n"
                              "       every = \"soon\";\n"
                              "       tags = ( \"x\", 3 );\n"
                              "       timeout = 5; };\n"
                              "  b: { plugin = \"fx_action\"; url = \"u\"; port = 70000; };\n"
                              "};\n");
    expect(cfg, APP_PLUGINS,
           "DIR/baton.cfg:4: actions.a: unknown key 'urll' (did you mean 'url'?); known keys: "
           "plugin, timeout, retries, rate, url, port, ratio, verbose, every, mode, tags, file\n"
           "DIR/baton.cfg:5: actions.a: port must be an integer, not a string\n"
           "DIR/baton.cfg:7: actions.a: mode = \"turbo\" is not one of: fast, safe\n"
           "DIR/baton.cfg:8: actions.a: every = \"soon\" is not a duration; expected a duration "
           "such as \"90s\", \"15m\", \"12h\", \"7d\"\n"
           "DIR/baton.cfg:9: actions.a: tags[1] must be a string, not an integer\n"
           "DIR/baton.cfg:10: actions.a: timeout must be a duration such as \"90s\", \"15m\", "
           "\"12h\", \"7d\", not an integer\n"
           "DIR/baton.cfg:3: actions.a: missing required key 'url' (where to call)\n"
           "DIR/baton.cfg:11: actions.b: port = 70000 is out of range (1 to 65535)\n");
    free(cfg);
}

/* A secret under the wrong key is never echoed: a value of more than a
 * few characters is shown by its length only. */
static void test_values_not_echoed(void **st)
{
    setenv("BATON_TEST_SECRET", "S3cr3t-Pa55", 1);
    char *cfg = with_fixtures("actions: {\n"
                              "  a: { plugin = \"fx_action\"; url = \"u\";\n"
                              "       mode = \"S3cr3t-Pa55\";\n"
                              "       every = \"${env:BATON_TEST_SECRET}\"; };\n"
                              "};\n"
                              "caps: { quiet_hours = { from = \"hunter2hunter2\"; to = \"08:00\"; "
                              "timezone = \"UTC\"; }; };\n");
    expect(cfg, APP_PLUGINS,
           "DIR/baton.cfg:7: caps.quiet_hours: from = (a value of 14 characters, not shown) is "
           "not a time of day; expected \"HH:MM\"\n"
           "DIR/baton.cfg:4: actions.a: mode = (a value of 11 characters, not shown) is not one "
           "of: fast, safe\n"
           "DIR/baton.cfg:5: actions.a: every = (a value of 11 characters, not shown) is not a "
           "duration; expected a duration such as \"90s\", \"15m\", \"12h\", \"7d\"\n");
    free(cfg);
    unsetenv("BATON_TEST_SECRET");
}

static void test_plugin_load_errors_in_config(void **st)
{
    char *cfg = with_fixtures("channels: {\n"
                              "  c: { plugin = \"fx_action\"; };\n"
                              "  off: { plugin = \"fx_wrong_major\"; enabled = false; };\n"
                              "};\n"
                              "actions: {\n"
                              "  m: { plugin = \"fx_acton\"; };\n"
                              "  w: { plugin = \"fx_wrong_major\"; };\n"
                              "};\n");
    const char *f = getenv("BATON_FIXTURES");
    char want[4096];
    snprintf(want, sizeof want,
             "DIR/baton.cfg:3: channels.c: plugin 'fx_action' is an action plugin; channels "
             "needs a channel plugin\n"
             "DIR/baton.cfg:7: actions.m: plugin 'fx_acton' not found (looked for fx_acton.so "
             "in: %s, %%EXE%%); did you mean 'fx_action'?\n"
             "DIR/baton.cfg:8: actions.w: %s/fx_wrong_major.so: built for baton ABI 2.0, but "
             "this host speaks ABI 1.5; rebuild it against baton-sdk 1.x\n",
             f, f);
    app a;
    char *got = load(cfg, APP_PLUGINS, &a);
    /* the default folders after the configured one depend on where the
     * test binary is: cut them out */
    char *p = strstr(got, ", ");
    char *end = p ? strstr(p, "); did you mean") : NULL;
    assert_non_null(end);
    memmove(p + 2, end, strlen(end) + 1);
    buf fixed;
    buf_init(&fixed);
    buf_add(&fixed, got, (size_t)(p + 2 - got));
    buf_adds(&fixed, "%EXE%");
    buf_adds(&fixed, p + 2);
    assert_string_equal(fixed.data, want);
    buf_free(&fixed);
    free(got);
    app_close(&a);
    free(cfg);
}

static void test_defaults_paths_and_init(void **st)
{
    char *cfg = with_fixtures(
        "actions: {\n"
        "  a: { plugin = \"fx_action\"; url = \"http://x\"; tags = [\"t1\", \"t2\"]; };\n"
        "  f: { plugin = \"fx_failing_init\"; };\n"
        "};\n");
    const char *f = getenv("BATON_FIXTURES");
    char want[2048];
    snprintf(want, sizeof want,
             "DIR/baton.cfg:4: actions.f: %s/fx_failing_init.so: init failed: cannot reach the "
             "license server at 127.0.0.1:9\n",
             f);
    expect(cfg, APP_INIT, want);
    free(cfg);

    /* a valid one: defaults applied, the PATH default resolved against the
     * file's folder, and the plugin reads them through the host table */
    cfg = with_fixtures("actions: { a: { plugin = \"fx_action\"; url = \"http://x\";\n"
                        "  tags = [\"t1\", \"t2\"]; mode = \"fast\"; timeout = \"250ms\"; }; };\n");
    app a;
    char *got = load(cfg, APP_INIT, &a);
    assert_string_equal(got, "");
    instance *inst = app_find(&a, "actions", "a");
    assert_non_null(inst);
    buf response;
    buf_init(&response);
    char reason[64];
    baton_action_call call = {.size = sizeof call, .key = "k"};
    assert_int_equal(
        instance_action(inst)->invoke(inst->state, &call, &response, reason, sizeof reason),
        BATON_OK);
    snprintf(
        want, sizeof want,
        "url=http://x port=8080 ratio=0.5 verbose=0 every=90000 mode=fast tags=2 file=%s/out.jsonl",
        dir);
    assert_string_equal(response.data, want);
    assert_int_equal(plugin_host_api()->config_duration_ms(inst, "timeout"), 250);
    assert_int_equal(plugin_host_api()->config_int(inst, "retries"), 3);
    assert_null(plugin_host_api()->config_string(inst, "no_such_key"));
    buf_free(&response);
    free(got);
    app_close(&a);
    free(cfg);
}

/* plugin = "vendor/x.so" is relative to the configuration's folder, not
 * to wherever baton was started. */
static void test_plugin_by_relative_path(void **st)
{
    const char *f = getenv("BATON_FIXTURES");
    char *cmd;
    assert_true(asprintf(&cmd, "mkdir -p %s/vendor && cp %s/fx_action.so %s/vendor/audit.so", dir,
                         f ? f : "build/tests/fixtures", dir) > 0);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    assert_int_equal(chdir("/"), 0);
    app a;
    char *got =
        load("actions: { a: { plugin = \"vendor/audit.so\"; url = \"u\"; }; };\n", APP_INIT, &a);
    assert_string_equal(got, "");
    assert_non_null(app_find(&a, "actions", "a"));
    free(got);
    app_close(&a);
}

/* serve's rollback: a stopped app comes back with instances created again
 * from the configuration as it was loaded, even though the file changed
 * since (an instance is started once in its life). */
static void test_reinit_after_stop(void **st)
{
    char *cfg =
        with_fixtures("actions: { a: { plugin = \"fx_action\"; url = \"http://x\"; }; };\n");
    app a;
    char *got = load(cfg, APP_INIT, &a);
    assert_string_equal(got, "");
    free(got);
    diag d;
    diag_init(&d);
    assert_int_equal(app_start(&a, &d), 0);
    instance *first = app_find(&a, "actions", "a");
    assert_int_equal(first->phase, INSTANCE_RUNNING);
    app_stop(&a);
    assert_int_equal(first->phase, INSTANCE_STOPPED);

    /* the file now says something else (and something broken) */
    free(file_write(dir, "baton.cfg", "actions: { a: { plugin = \"nope\"; }; };\n"));
    assert_int_equal(app_reinit(&a, &d), 0);
    assert_int_equal(d.errors, 0);
    assert_int_equal(a.ninst, 1);
    instance *inst = app_find(&a, "actions", "a");
    assert_non_null(inst);
    assert_int_equal(inst->phase, INSTANCE_READY);
    assert_int_equal(app_start(&a, &d), 0);
    assert_int_equal(inst->phase, INSTANCE_RUNNING);
    assert_string_equal(plugin_host_api()->config_string(inst, "url"), "http://x");
    buf response;
    buf_init(&response);
    char reason[64];
    baton_action_call call = {.size = sizeof call, .key = "k"};
    assert_int_equal(
        instance_action(inst)->invoke(inst->state, &call, &response, reason, sizeof reason),
        BATON_OK);
    assert_non_null(strstr(response.data, "url=http://x "));
    buf_free(&response);
    diag_free(&d);
    app_close(&a);
    free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_minimal_is_valid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_syntax_error_has_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env_typed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_settings_suggest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_baton_section_types, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env_substitution, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relative_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uses_and_profiles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_paths_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_caps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plugin_settings_all_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_values_not_echoed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plugin_load_errors_in_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_defaults_paths_and_init, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plugin_by_relative_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reinit_after_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_block, setup, teardown),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
