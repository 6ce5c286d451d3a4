/* `baton check` loads the schema every source names and reports each of
 * its errors on its own file:line, exit 2; a good schema is listed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/fs.h"

static const char *bin, *plugins;

static int setup(void **st)
{
    bin = getenv("BATON_BIN");
    plugins = getenv("BATON_PLUGINS");
    return bin && plugins ? 0 : -1;
}

static char *config(const char *dir)
{
    char *text;
    if (asprintf(&text,
                 "baton: { data_dir = \"var\"; plugin_path = [ \"%s\" ]; };\n"
                 "sources: { crm: { plugin = \"source_sqlite\"; path = \"var/crm.db\";\n"
                 "                  schema = \"schema.cfg\"; }; };\n"
                 "profiles = \"crm\";\n",
                 plugins) < 0)
        abort();
    char *path = file_write(dir, "baton.cfg", text);
    free(text);
    return path;
}

static int check(const char *cfg, char **out, char **err)
{
    char *cmd;
    if (asprintf(&cmd, "%s -c %s check", bin, cfg) < 0)
        abort();
    int rc = run_capture(cmd, out, err);
    free(cmd);
    return rc;
}

static void test_broken_schema(void **st)
{
    char *dir = tmpdir_make("schema");
    char *cfg = config(dir);
    char *sch =
        file_write(dir, "schema.cfg",
                   "entities: {\n"
                   "  profiles: { key = \"id\";\n"
                   "    fields: { id = \"string\"; tier = \"strng\"; }; };\n"
                   "  orders: { key = \"id\"; fields: { id = \"string\"; pid = \"string\"; };\n"
                   "    links: { profile = { to = \"profils\"; via = \"pid\"; };\n"
                   "             other = { to = \"profiles\"; via = \"pidd\"; }; }; };\n"
                   "};\n");
    char *out, *err;
    assert_int_equal(check(cfg, &out, &err), 2);
    char want[512];
    snprintf(want, sizeof want,
             "%s:3: profiles.tier: unknown type 'strng' (did you mean 'string'?)", sch);
    assert_non_null(strstr(err, want));
    snprintf(want, sizeof want,
             "%s:5: orders.links.profile: link to unknown entity 'profils' (did you mean "
             "'profiles'?)",
             sch);
    assert_non_null(strstr(err, want));
    snprintf(want, sizeof want,
             "%s:6: orders.links.other: via 'pidd' is not a field of orders (did you mean 'pid'?)",
             sch);
    assert_non_null(strstr(err, want));
    free(out);
    free(err);
    tmpdir_remove(dir);
    free(sch);
    free(cfg);
    free(dir);
}

static void test_good_schema_and_missing_profiles(void **st)
{
    char *dir = tmpdir_make("schema");
    char *cfg = config(dir);
    char *sch =
        file_write(dir, "schema.cfg",
                   "entities: { profiles: { key = \"id\"; fields: { id = \"string\"; }; }; };\n");
    char *out, *err;
    assert_int_equal(check(cfg, &out, &err), 0);
    assert_non_null(strstr(out, "schema.cfg: ok: 1 entities, 0 links (source crm)"));
    free(out);
    free(err);
    free(file_write(dir, "schema.cfg",
                    "entities: { people: { key = \"id\"; fields: { id = \"string\"; }; }; };\n"));
    assert_int_equal(check(cfg, &out, &err), 2);
    assert_non_null(strstr(err, "has no 'profiles' entity"));
    free(out);
    free(err);
    tmpdir_remove(dir);
    free(sch);
    free(cfg);
    free(dir);
}

/* profiles_timezone names a string field of profiles. */
static void test_profiles_timezone(void **st)
{
    char *dir = tmpdir_make("schema");
    char *cfg = config(dir);
    char *sch = file_write(dir, "schema.cfg",
                           "entities: { profiles: { key = \"id\"; fields: { id = \"string\"; tz = "
                           "\"string\"; n = \"int\"; }; }; };\n");
    char *out, *err;
    const char *cases[][2] = {{"tz", NULL},
                              {"zone", "profiles_timezone = \"zone\" must name a string field of "
                                       "profiles (it has none)"},
                              {"n", "profiles_timezone = \"n\" must name a string field of "
                                    "profiles (it is not a string)"}};
    for (size_t i = 0; i < 3; i++) {
        FILE *f = fopen(cfg, "a");
        assert_non_null(f);
        fprintf(f, "profiles_timezone = \"%s\";\n", cases[i][0]);
        fclose(f);
        int rc = check(cfg, &out, &err);
        if (!cases[i][1]) {
            assert_int_equal(rc, 0);
        } else {
            assert_int_equal(rc, 2);
            if (!strstr(err, cases[i][1]))
                fail_msg("expected '%s' in:\n%s", cases[i][1], err);
        }
        free(out);
        free(err);
        free(cfg);
        cfg = config(dir); /* again without it */
    }
    tmpdir_remove(dir);
    free(sch);
    free(cfg);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_broken_schema),
        cmocka_unit_test(test_profiles_timezone),
        cmocka_unit_test(test_good_schema_and_missing_profiles),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
