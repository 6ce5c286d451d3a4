/* scripts/check-layers.sh: the tree keeps its stage order, and the check
 * would notice if it did not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "support/fs.h"

static const char *src(void)
{
    const char *s = getenv("BATON_SRC");
    return s ? s : ".";
}

/* Run the check over dir; its exit status, its output in out. */
static int run_check(const char *dir, char *out, size_t len)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "sh '%s/scripts/check-layers.sh' '%s' 2>&1", src(), dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, len - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* file_write, making the folders first */
static void write_file(const char *dir, const char *rel, const char *text)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "mkdir -p \"$(dirname '%s/%s')\"", dir, rel);
    assert_int_equal(system(cmd), 0);
    free(file_write(dir, rel, text));
}

static void the_tree_keeps_its_order(void **state)
{
    char out[65536];
    int rc = run_check(src(), out, sizeof out);
    if (rc != 0)
        fprintf(stderr, "%s", out);
    assert_int_equal(rc, 0);
}

static void an_upward_include_is_refused_with_its_line(void **state)
{
    char *dir = tmpdir_make("layers");
    write_file(dir, "core/base/a.h", "#include <stdio.h>\n");
    write_file(dir, "core/journey/j.h", "#include \"base/a.h\"\n");
    write_file(dir, "core/lang/ok.c", "#include \"base/a.h\"\n#include \"lang/ok.h\"\n");
    write_file(dir, "core/lang/ok.h", "\n");
    write_file(dir, "plugins/p/p.c", "#include <baton/baton.h>\n#include \"p.h\"\n");
    write_file(dir, "plugins/p/p.h", "\n");
    char out[65536];
    assert_int_equal(run_check(dir, out, sizeof out), 0);

    write_file(dir, "core/base/b.c", "#include <stdio.h>\n\n#include \"journey/j.h\"\n");
    assert_int_equal(run_check(dir, out, sizeof out), 1);
    assert_non_null(strstr(out, "core/base/b.c:3: #include \"journey/j.h\": core/base may not "
                                "use core/journey (above it)"));
    write_file(dir, "core/base/b.c", "#include <stdio.h>\n");

    write_file(dir, "plugins/p/p.c", "#include \"lang/ok.h\"\n");
    assert_int_equal(run_check(dir, out, sizeof out), 1);
    assert_non_null(strstr(out, "plugins/p/p.c:1: #include \"lang/ok.h\": plugins reach the host "
                                "only through <baton/...>"));
    write_file(dir, "plugins/p/p.c", "\n");

    write_file(dir, "core/util.c", "\n");
    assert_int_equal(run_check(dir, out, sizeof out), 1);
    assert_non_null(strstr(out, "core/util.c: a core file outside the stage folders"));
    tmpdir_remove(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_tree_keeps_its_order),
        cmocka_unit_test(an_upward_include_is_refused_with_its_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
