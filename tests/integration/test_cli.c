/* The command line as users and scripts meet it: exit codes, --help,
 * `check` on the shipped configuration and on a broken copy (every error
 * on its own file:line), `plugins --json` and `--describe`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <libconfig.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/fs.h"

static const char *bin, *src, *build, *fixtures;

static int baton(char **out, char **err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = run_baton_v(NULL, NULL, out, err, fmt, ap);
    va_end(ap);
    return rc;
}

static int setup(void **st)
{
    bin = getenv("BATON_BIN");
    src = getenv("BATON_SRC");
    build = getenv("BATON_BUILD");
    fixtures = getenv("BATON_FIXTURES");
    return bin && src && build && fixtures ? 0 : -1;
}

static void test_usage_and_exit_codes(void **st)
{
    char *out, *err;
    assert_int_equal(baton(&out, &err, "--help"), 0);
    assert_non_null(strstr(out, "usage: baton [-c FILE] <command>"));
    assert_non_null(strstr(out, "check"));
    free(out);
    free(err);
    assert_int_equal(baton(&out, &err, "check --help"), 0);
    assert_non_null(strstr(out, "usage: baton [-c FILE] check"));
    free(out);
    free(err);
    assert_int_equal(baton(&out, &err, "frobnicate"), 2);
    assert_non_null(strstr(err, "baton: unknown command 'frobnicate'"));
    free(out);
    free(err);
    assert_int_equal(baton(&out, &err, "--nope"), 2);
    free(out);
    free(err);
    assert_int_equal(baton(&out, &err, "-c /nonexistent/baton.cfg check"), 2);
    assert_string_equal(err, "/nonexistent/baton.cfg: cannot read the configuration file: No such "
                             "file or directory\n"
                             "baton check: 1 error(s)\n");
    free(out);
    free(err);
    assert_int_equal(baton(&out, &err, "--version"), 0);
    assert_non_null(strstr(out, "plugin ABI 1.5"));
    free(out);
    free(err);
}

static void test_shipped_config_checks(void **st)
{
    char *out, *err;
    int rc = baton(&out, &err, "-c %s/conf/baton.cfg check", src);
    if (rc != 0)
        fprintf(stderr, "%s%s", out, err);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "conf/baton.cfg: ok"));
    free(out);
    free(err);
}

/* A copy of conf/ in a fresh folder, where ../build/plugins still finds
 * the plugins; returns its baton.cfg, and the folder in *tmp. */
static char *copy_conf(char **tmp)
{
    *tmp = tmpdir_make("cli");
    char *cmd, *cfg;
    assert_true(asprintf(&cmd,
                         "cp -r %s/conf %s/conf && mkdir -p %s/build && "
                         "ln -s %s/plugins %s/build/plugins",
                         src, *tmp, *tmp, build, *tmp) > 0);
    assert_int_equal(run_capture(cmd, NULL, NULL), 0);
    free(cmd);
    assert_true(asprintf(&cfg, "%s/conf/baton.cfg", *tmp) > 0);
    return cfg;
}

/* A copy of conf/ whose plugin folder also holds the fixtures, broken in
 * four ways; every error must be printed on the line that holds it. */
static void test_broken_copy(void **st)
{
    char *tmp, *cfg = copy_conf(&tmp);

    config_t lc;
    config_init(&lc);
    assert_true(config_read_file(&lc, cfg));
    config_setting_t *root = config_root_setting(&lc);
    config_setting_t *pp = config_lookup(&lc, "baton.plugin_path");
    assert_non_null(pp);
    config_setting_set_string(config_setting_add(pp, NULL, CONFIG_TYPE_STRING), fixtures);
    config_setting_t *actions = config_setting_get_member(root, "actions");
    if (!actions)
        actions = config_setting_add(root, "actions", CONFIG_TYPE_GROUP);
    const char *bad[][3] = {
        {"bad_key", "fx_action", "hots"},    /* unknown key */
        {"bad_type", "fx_action", "port"},   /* wrong type */
        {"bad_plugin", "fx_no_such", NULL},  /* missing plugin */
        {"bad_abi", "fx_wrong_major", NULL}, /* ABI mismatch */
    };
    for (size_t i = 0; i < 4; i++) {
        config_setting_t *g = config_setting_add(actions, bad[i][0], CONFIG_TYPE_GROUP);
        config_setting_set_string(config_setting_add(g, "plugin", CONFIG_TYPE_STRING), bad[i][1]);
        if (strcmp(bad[i][1], "fx_action") == 0)
            config_setting_set_string(config_setting_add(g, "url", CONFIG_TYPE_STRING), "http://x");
        if (bad[i][2])
            config_setting_set_string(config_setting_add(g, bad[i][2], CONFIG_TYPE_STRING), "x");
    }
    assert_true(config_write_file(&lc, cfg));
    config_destroy(&lc);

    /* where each broken setting landed in the written file */
    config_init(&lc);
    assert_true(config_read_file(&lc, cfg));
    char want[4][1024];
    int l0 = config_setting_source_line(config_lookup(&lc, "actions.bad_key.hots"));
    int l1 = config_setting_source_line(config_lookup(&lc, "actions.bad_type.port"));
    int l2 = config_setting_source_line(config_lookup(&lc, "actions.bad_plugin"));
    int l3 = config_setting_source_line(config_lookup(&lc, "actions.bad_abi"));
    config_destroy(&lc);
    snprintf(want[0], sizeof want[0], "%s:%d: actions.bad_key: unknown key 'hots'", cfg, l0);
    snprintf(want[1], sizeof want[1],
             "%s:%d: actions.bad_type: port must be an integer, not a string", cfg, l1);
    snprintf(want[2], sizeof want[2], "%s:%d: actions.bad_plugin: plugin 'fx_no_such' not found",
             cfg, l2);
    snprintf(want[3], sizeof want[3],
             "%s:%d: actions.bad_abi: %s/fx_wrong_major.so: built for baton ABI 2.0, but this host "
             "speaks ABI 1.5",
             cfg, l3, fixtures);

    char *out, *err;
    assert_int_equal(baton(&out, &err, "-c %s check", cfg), 2);
    for (int i = 0; i < 4; i++) {
        /* each at the start of its own line */
        char *at = strstr(err, want[i]);
        if (!at)
            fprintf(stderr, "missing: %s\nin:\n%s", want[i], err);
        assert_non_null(at);
        assert_true(at == err || at[-1] == '\n');
    }
    assert_non_null(strstr(err, "baton check: 4 error(s)\n"));
    free(out);
    free(err);
    free(cfg);
    tmpdir_remove(tmp);
    free(tmp);
}

/* consent must name a bool field of profiles, address an existing one */
static void test_channel_fields_checked(void **st)
{
    char *tmp, *cfg = copy_conf(&tmp);
    config_t lc;
    config_init(&lc);
    assert_true(config_read_file(&lc, cfg));
    config_setting_t *email = config_lookup(&lc, "channels.email");
    assert_non_null(email);
    config_setting_t *c = config_setting_get_member(email, "consent");
    assert_non_null(c);
    config_setting_set_string(c, "first_name");
    config_setting_t *ad = config_setting_get_member(email, "address");
    assert_non_null(ad);
    config_setting_set_string(ad, "emial");
    assert_true(config_write_file(&lc, cfg));
    config_destroy(&lc);
    config_init(&lc);
    assert_true(config_read_file(&lc, cfg));
    int lc_line = config_setting_source_line(config_lookup(&lc, "channels.email.consent"));
    int la_line = config_setting_source_line(config_lookup(&lc, "channels.email.address"));
    config_destroy(&lc);
    char *out, *err;
    assert_int_equal(baton(&out, &err, "-c %s check", cfg), 2);
    char want[1024];
    snprintf(want, sizeof want,
             "%s:%d: channels.email: address = \"emial\" is not a field of profiles (did you mean "
             "'email'?)\n",
             cfg, la_line);
    assert_non_null(strstr(err, want));
    snprintf(want, sizeof want,
             "%s:%d: channels.email: consent = \"first_name\" must name a bool field of profiles\n",
             cfg, lc_line);
    assert_non_null(strstr(err, want));
    free(out);
    free(err);
    free(cfg);
    tmpdir_remove(tmp);
    free(tmp);
}

static void test_plugins_json_lists_every_plugin(void **st)
{
    char *out, *err;
    assert_int_equal(baton(&out, &err, "-c %s/conf/baton.cfg plugins --json", src), 0);
    json_error_t je;
    json_t *root = json_loads(out, 0, &je);
    assert_non_null(root);
    json_t *arr = json_object_get(root, "plugins");
    assert_true(json_is_array(arr));
    /* every .so of the build is there, with name, kind, version and ABI */
    char *cmd, *list;
    assert_true(asprintf(&cmd, "ls %s/plugins 2>/dev/null | sed -n 's/\\.so$//p'", build) > 0);
    assert_int_equal(run_capture(cmd, &list, NULL), 0);
    free(cmd);
    size_t expected = 0;
    for (char *line = strtok(list, "\n"); line; line = strtok(NULL, "\n")) {
        expected++;
        int found = 0;
        size_t i;
        json_t *p;
        json_array_foreach(arr, i, p)
        {
            if (strcmp(json_string_value(json_object_get(p, "name")), line) != 0)
                continue;
            found = 1;
            assert_null(json_object_get(p, "error"));
            assert_true(json_is_string(json_object_get(p, "kind")));
            assert_true(json_is_string(json_object_get(p, "version")));
            assert_string_equal(json_string_value(json_object_get(p, "abi")), "1.5");
            assert_true(json_is_array(json_object_get(p, "used_by")));
        }
        if (!found)
            fprintf(stderr, "plugin %s missing from plugins --json\n", line);
        assert_true(found);
    }
    assert_true(json_array_size(arr) >= expected);
    free(list);
    json_decref(root);
    free(out);
    free(err);
}

static void test_describe(void **st)
{
    char *tmp = tmpdir_make("describe");
    char *text;
    assert_true(asprintf(&text, "baton: { plugin_path = [ \"%s\" ]; };\n", fixtures) > 0);
    char *cfg = file_write(tmp, "baton.cfg", text);
    free(text);
    char *out, *err;
    assert_int_equal(baton(&out, &err, "-c %s plugins --describe fx_action", cfg), 0);
    assert_non_null(strstr(out, "fx_action 1.2.3 — action plugin, ABI 1.5"));
    assert_non_null(strstr(out, "  url            string    required\n      where to call\n"));
    assert_non_null(strstr(out, "  port           int       default \"8080\" range 1..65535\n"));
    assert_non_null(strstr(out, "  mode           enum      default \"safe\" one of: fast safe\n"));
    assert_non_null(
        strstr(out, "  timeout        duration  default \"10s\"\n      one call's time limit\n"));
    free(out);
    free(err);
    assert_int_equal(baton(&out, &err, "-c %s plugins --describe fx_nothing", cfg), 2);
    assert_non_null(strstr(err, "plugin 'fx_nothing' not found"));
    free(out);
    free(err);
    assert_int_equal(baton(&out, &err, "-c %s plugins", cfg), 0);
    assert_non_null(strstr(out, "fx_wrong_major         error: "));
    assert_non_null(strstr(out, "fx_action              action    1.2.3    ABI 1.5  -\n"));
    free(out);
    free(err);
    free(cfg);
    tmpdir_remove(tmp);
    free(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usage_and_exit_codes),
        cmocka_unit_test(test_shipped_config_checks),
        cmocka_unit_test(test_broken_copy),
        cmocka_unit_test(test_channel_fields_checked),
        cmocka_unit_test(test_plugins_json_lists_every_plugin),
        cmocka_unit_test(test_describe),
    };
    return cmocka_run_group_tests_name("cli", tests, setup, NULL);
}
