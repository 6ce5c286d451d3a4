/* Every input a fuzzer ever crashed on (tests/fuzz/regressions/, named
 * <target>-<what>) and every seed of the fuzz corpora, replayed through
 * the same code the fuzzers run: none may crash (the suite runs under
 * ASan/UBSan with make test SANITIZE=1). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/fs.h"
#include "support/fuzz_inputs.h"

static size_t replay_dir(const char *dir, const char *force_prefix)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        size_t len;
        char *data = file_read(path, &len);
        assert_non_null(data);
        char name[512];
        snprintf(name, sizeof name, "%s%s", force_prefix ? force_prefix : "", de->d_name);
        if (fuzz_replay(name, (const uint8_t *)data, len) != 0)
            fail_msg("%s: name it <target>-<what> (expr-, template-, schema-, chain-)", path);
        free(data);
        n++;
    }
    closedir(d);
    return n;
}

static void test_replay(void **st)
{
    const char *src = getenv("BATON_SRC");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/fuzz/regressions", src ? src : ".");
    size_t n = replay_dir(dir, NULL);
    snprintf(dir, sizeof dir, "%s/tests/fuzz/corpus/fuzz_expr", src ? src : ".");
    size_t c = replay_dir(dir, "expr-");
    snprintf(dir, sizeof dir, "%s/tests/fuzz/corpus/fuzz_template", src ? src : ".");
    c += replay_dir(dir, "template-");
    snprintf(dir, sizeof dir, "%s/tests/fuzz/corpus/fuzz_schema", src ? src : ".");
    c += replay_dir(dir, "schema-");
    print_message("replayed %zu regression input(s) and %zu corpus seed(s)\n", n, c);
    assert_true(c > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
