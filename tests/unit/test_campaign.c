/* campaign files and the campaign graph: structure, ids, inputs, cycles,
 * schedules — every error with file:line, all of them at once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "campaign/campaign.h"
#include "support/fs.h"

static char *dir;

static int setup(void **state)
{
    dir = tmpdir_make("campaign");
    return 0;
}
static int teardown(void **state)
{
    tmpdir_remove(dir);
    free(dir);
    return 0;
}

/* All diagnostics, one per line, as printed. */
static char *messages(const diag *d)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    diag_print(d, f);
    fclose(f);
    return out;
}

static int parse_text(const char *text, campaign *c, diag *d, char **path)
{
    *path = file_write(dir, "c.cfg", text);
    int rc = campaign_parse(c, *path, d);
    if (rc == 0)
        rc = campaign_graph(c, d);
    return rc;
}

static void test_valid_graph_order(void **state)
{
    campaign c;
    diag d;
    diag_init(&d);
    char *path;
    int rc = parse_text(
        "campaign: {\n"
        "  name = \"winback\";\n"
        "  schedule = { at = \"2026-12-01T09:00:00Z\"; repeat = \"1d\"; timezone = "
        "\"Europe/Paris\"; };\n"
        "  activities = (\n"
        "    { id = \"mail\"; type = \"send\"; input = \"ab.a\"; channel = \"mail\"; },\n"
        "    { id = \"ab\"; type = \"split\"; input = \"both\"; },\n"
        "    { id = \"both\"; type = \"combine\"; inputs = [ \"x\", \"y\" ]; },\n"
        "    { id = \"x\"; type = \"build_audience\"; },\n"
        "    { id = \"y\"; type = \"build_audience\"; }\n"
        "  );\n};\n",
        &c, &d, &path);
    char *m = messages(&d);
    assert_int_equal(rc, 0);
    assert_string_equal(m ? m : "", "");
    assert_string_equal(c.name, "winback");
    assert_int_equal(c.has_schedule, 1);
    assert_int_equal(c.at, 1796115600);
    assert_int_equal(c.repeat_s, 86400);
    assert_string_equal(c.timezone, "Europe/Paris");
    assert_int_equal(c.norder, 5);
    /* producers before consumers */
    size_t pos[5];
    for (size_t k = 0; k < 5; k++)
        pos[c.order[k]] = k;
    assert_true(pos[3] < pos[2] && pos[4] < pos[2] && pos[2] < pos[1] && pos[1] < pos[0]);
    assert_int_equal(c.acts[0].inputs[0].act, 1);
    free(m);
    free(path);
    campaign_free(&c);
    diag_free(&d);
}

static void test_every_error_at_once(void **state)
{
    campaign c;
    diag d;
    diag_init(&d);
    char *path;
    int rc = parse_text("campaign: {\n"                                     /* 1 */
                        "  name = \"bad name\";\n"                          /* 2 */
                        "  shedule = 3;\n"                                  /* 3 */
                        "  activities = (\n"                                /* 4 */
                        "    { id = \"a\"; type = \"build_audience\"; },\n" /* 5 */
                        "    { id = \"a\"; type = \"build_audience\"; },\n" /* 6 */
                        "    { type = \"combine\"; },\n"                    /* 7 */
                        "    { id = \"b\"; type = \"send\"; input = 3; }\n" /* 8 */
                        "  );\n};\n",
                        &c, &d, &path);
    assert_int_not_equal(rc, 0);
    char *m = messages(&d);
    char want[2048];
    snprintf(
        want, sizeof want,
        "%s:3: campaign: unknown key 'shedule' (did you mean 'schedule'?); known keys: name, "
        "source, schedule, activities, parameters, retention\n"
        "%s:2: campaign: name 'bad name' may hold only letters, digits, '_' and '-'\n"
        "%s:6: activity id 'a' is used twice (first at line 5)\n"
        "%s:7: activities[2]: missing required key 'id'\n"
        "%s:8: activity 'b': input must be a string naming a transition (\"lapsed\" or \"ab.a\")\n",
        path, path, path, path, path);
    assert_string_equal(m, want);
    free(m);
    free(path);
    campaign_free(&c);
    diag_free(&d);
}

static void test_unknown_input_and_cycle(void **state)
{
    campaign c;
    diag d;
    diag_init(&d);
    char *path;
    int rc = parse_text("campaign: {\n"
                        "  name = \"loop\";\n"
                        "  activities = (\n"
                        "    { id = \"lapsed\"; type = \"build_audience\"; },\n"
                        "    { id = \"a\"; type = \"deduplicate\"; input = \"c\"; },\n"
                        "    { id = \"b\"; type = \"enrich\"; input = \"a\"; },\n"
                        "    { id = \"c\"; type = \"enrich\"; input = \"b\"; },\n"
                        "    { id = \"d\"; type = \"send\"; input = \"lapsd\"; }\n"
                        "  );\n};\n",
                        &c, &d, &path);
    assert_int_not_equal(rc, 0);
    char *m = messages(&d);
    char want[1024];
    snprintf(want, sizeof want,
             "%s:8: activity 'd': input 'lapsd' names no activity of this campaign (did you mean "
             "'lapsed'?)\n"
             "%s:5: the activities form a cycle: a -> b -> c -> a\n",
             path, path);
    assert_string_equal(m, want);
    free(m);
    free(path);
    campaign_free(&c);
    diag_free(&d);
}

static void test_schedule_errors(void **state)
{
    campaign c;
    diag d;
    diag_init(&d);
    char *path;
    parse_text("campaign: {\n"
               "  name = \"s\";\n"
               "  schedule = { at = \"tomorrow\"; repeat = \"10s\"; timezone = \"Mars/Olympus\"; "
               "every = 1; };\n"
               "  activities = ( { id = \"a\"; type = \"build_audience\"; } );\n};\n",
               &c, &d, &path);
    char *m = messages(&d);
    assert_non_null(strstr(m, ":3: schedule: unknown key 'every'"));
    assert_non_null(strstr(m, ":3: schedule: at = \"tomorrow\" is not an ISO 8601 timestamp"));
    assert_non_null(
        strstr(m, ":3: schedule: repeat = \"10s\" is not a duration of a minute or more"));
    assert_non_null(strstr(m, ":3: schedule: unknown timezone 'Mars/Olympus'"));
    free(m);
    free(path);
    campaign_free(&c);
    diag_free(&d);
}

static void test_syntax_error_and_settings(void **state)
{
    campaign c;
    diag d;
    diag_init(&d);
    char *path;
    assert_int_not_equal(
        parse_text("campaign: {\n  name = \"x\";\n  activities = ( { id = ; } );\n};\n", &c, &d,
                   &path),
        0);
    char *m = messages(&d);
    assert_non_null(strstr(m, ":3: syntax error"));
    free(m);
    free(path);
    campaign_free(&c);
    diag_free(&d);

    diag_init(&d);
    parse_text("campaign: { name = \"x\"; activities = ( { id = \"s\"; type = \"split\";\n"
               " branches = ( { name = \"a\"; percent = 50; }, { name = \"b\"; filter = \"x\"; } "
               "); } ); };\n",
               &c, &d, &path);
    config_setting_t *g = c.acts[0].group;
    assert_string_equal(config_setting_get_string(campaign_setting(g, "branches.1.name")), "b");
    assert_int_equal(config_setting_get_int(campaign_setting(g, "branches.0.percent")), 50);
    assert_null(campaign_setting(g, "branches.2.name"));
    assert_null(campaign_setting(g, "nope"));
    free(path);
    campaign_free(&c);
    diag_free(&d);
}

static void test_files_of_folders(void **state)
{
    char *sub = file_write(dir, "b.cfg", "x");
    char *a = file_write(dir, "a.cfg", "x");
    char *other = file_write(dir, "notes.txt", "x");
    char *paths[] = {dir, "/elsewhere/one.cfg"};
    size_t n;
    char **files = campaign_files(paths, 2, &n);
    assert_int_equal(n, 3);
    assert_string_equal(files[0], a);
    assert_string_equal(files[1], sub);
    assert_string_equal(files[2], "/elsewhere/one.cfg");
    assert_null(files[3]);
    campaign_files_free(files);
    free(sub);
    free(a);
    free(other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_valid_graph_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_error_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_input_and_cycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schedule_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_syntax_error_and_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_files_of_folders, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
