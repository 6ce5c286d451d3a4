/* cfgfile: versioned reads, saves refused when the file changed under
 * them (nothing lost), kept versions restorable, and the console's edit
 * of a channel's `enabled` in baton.cfg keeping every comment. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/cfgfile.h"
#include "support/fs.h"

static char *dir;

static int setup(void **st)
{
    dir = tmpdir_make("cfgfile");
    return 0;
}

static int teardown(void **st)
{
    tmpdir_remove(dir);
    free(dir);
    return 0;
}

static void test_save_conflict_versions(void **st)
{
    char *path = file_write(dir, "c.cfg", "# mine\ncampaign: { name = \"c\"; };\n");
    char *text, err[256], ver[CFGFILE_VERSION_LEN];
    size_t n;
    assert_int_equal(cfgfile_read(path, &text, &n, ver, err, sizeof err), 0);
    assert_int_equal(strlen(ver), 16);
    cfgfile_saved s;
    const char *v2 = "campaign: { name = \"c\"; source = \"crm\"; };\n";
    assert_int_equal(
        cfgfile_save(path, dir, "campaigns", "c", v2, strlen(v2), ver, &s, err, sizeof err), 0);
    assert_true(s.previous[0]);
    char *now = file_read(path, NULL);
    assert_string_equal(now, v2);
    free(now);
    /* a hand edit after the console read the file: the save is refused and
     * the hand edit stays */
    free(file_write(dir, "c.cfg", "campaign: { name = \"c\"; }; # by hand\n"));
    const char *v3 = "campaign: { name = \"c\"; source = \"other\"; };\n";
    assert_int_equal(
        cfgfile_save(path, dir, "campaigns", "c", v3, strlen(v3), s.version, &s, err, sizeof err),
        1);
    assert_string_equal(s.current, "campaign: { name = \"c\"; }; # by hand\n");
    char hv[CFGFILE_VERSION_LEN];
    cfgfile_version(s.current, strlen(s.current), hv);
    assert_string_equal(hv, s.current_version);
    free(s.current);
    now = file_read(path, NULL);
    assert_string_equal(now, "campaign: { name = \"c\"; }; # by hand\n");
    free(now);
    /* the version kept is the first text, restorable by its id */
    json_t *vs = cfgfile_versions(dir, "campaigns", "c");
    json_t *arr = json_object_get(vs, "versions");
    assert_int_equal(json_array_size(arr), 1);
    const char *id = json_string_value(json_object_get(json_array_get(arr, 0), "id"));
    char *old;
    assert_int_equal(cfgfile_version_text(dir, "campaigns", "c", id, &old, &n, err, sizeof err), 0);
    assert_string_equal(old, text);
    free(old);
    assert_int_equal(
        cfgfile_version_text(dir, "campaigns", "c", "../../c", &old, &n, err, sizeof err), -1);
    json_decref(vs);
    /* the folder of versions is private */
    char vdir[1024];
    snprintf(vdir, sizeof vdir, "%s/versions/campaigns/c", dir);
    struct stat sb;
    assert_int_equal(stat(vdir, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    /* names that would leave the folder are refused */
    assert_int_equal(
        cfgfile_save(path, dir, "campaigns", "../x", v2, strlen(v2), NULL, &s, err, sizeof err),
        -1);
    free(text);
    free(path);
}

static void test_channel_enabled(void **st)
{
    const char *cfg = "# top\n"
                      "channels: {\n"
                      "  email: { enabled = true; plugin = \"channel_email\"; # the SMTP one\n"
                      "           from = \"a {b} \\\"enabled = true\\\"\"; };\n"
                      "  sms: { plugin = \"channel_sms\"; /* enabled = true */ params = [ \"x\" ]; "
                      "};\n"
                      "  push: { plugin = \"channel_push\"; opts = { enabled = true; }; enabled "
                      "= false; };\n"
                      "};\n";
    char *out, err[256];
    assert_int_equal(cfgtext_set_channel_enabled(cfg, "email", 0, &out, err, sizeof err), 0);
    assert_non_null(strstr(out, "email: { enabled = false; plugin"));
    assert_non_null(strstr(out, "# the SMTP one"));
    assert_non_null(strstr(out, "\\\"enabled = true\\\""));
    assert_non_null(strstr(out, "# top"));
    assert_int_equal(strlen(out), strlen(cfg) + 1);
    free(out);
    /* a channel without the setting gets one, the comment stays as it was */
    assert_int_equal(cfgtext_set_channel_enabled(cfg, "sms", 0, &out, err, sizeof err), 0);
    assert_non_null(strstr(out, "sms: { enabled = false; plugin = \"channel_sms\"; /* enabled = "
                                "true */"));
    free(out);
    /* the group's own key, not one of a nested group */
    assert_int_equal(cfgtext_set_channel_enabled(cfg, "push", 1, &out, err, sizeof err), 0);
    assert_non_null(strstr(out, "opts = { enabled = true; }; enabled = true; }"));
    free(out);
    assert_int_equal(cfgtext_set_channel_enabled(cfg, "fax", 1, &out, err, sizeof err), -1);
    assert_non_null(strstr(err, "no channel 'fax'"));
    assert_int_equal(cfgtext_set_channel_enabled("channels: { x: {", "x", 1, &out, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "line "));
}

static void test_scratch(void **st)
{
    char *path = file_write(dir, "j.cfg", "x = 1;\n");
    char *tmp, err[256];
    assert_int_equal(cfgfile_scratch(path, "y = 2;\n", 7, &tmp, err, sizeof err), 0);
    assert_non_null(strstr(tmp, "/.j.cfg.check-"));
    char *t = file_read(tmp, NULL);
    assert_string_equal(t, "y = 2;\n");
    free(t);
    unlink(tmp);
    free(tmp);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_save_conflict_versions),
        cmocka_unit_test(test_channel_enabled),
        cmocka_unit_test(test_scratch),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
