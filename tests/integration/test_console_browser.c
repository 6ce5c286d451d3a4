/* The web console in a browser: runs the node suite under tests/browser/
 * (Debian's chromium driven by playwright-core against a real baton serve,
 * see harness.mjs) and asserts it passed. The setup installs
 * playwright-core with `npm ci` from tests/browser/package-lock.json into
 * $BATON_BUILD/browser (again only when the lock file changed); no
 * browser is downloaded. Screenshots land in $BATON_BUILD/screenshots/. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support/fs.h"

static const char *env(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v && *v ? v : dflt;
}

static int same_file(const char *a, const char *b)
{
    size_t la, lb;
    char *x = file_read(a, &la), *y = file_read(b, &lb);
    int same = x && y && la == lb && memcmp(x, y, la) == 0;
    free(x);
    free(y);
    return same;
}

static int sh(const char *cmd)
{
    fflush(stdout);
    int rc = system(cmd);
    return rc == -1 ? -1 : WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
}

static int setup(void **st)
{
    const char *src = env("BATON_SRC", "."), *build = env("BATON_BUILD", "build");
    char lock[4096], have[4096], mod[4096], cmd[16384];
    snprintf(lock, sizeof lock, "%s/tests/browser/package-lock.json", src);
    snprintf(have, sizeof have, "%s/browser/package-lock.json", build);
    snprintf(mod, sizeof mod, "%s/browser/node_modules/playwright-core/package.json", build);
    if (same_file(lock, have) && access(mod, R_OK) == 0)
        return 0;
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s/browser' && cp '%s/tests/browser/package.json' '%s' '%s/browser/' && "
             "cd '%s/browser' && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error",
             build, src, lock, build, build);
    if (sh(cmd) != 0) {
        fprintf(stderr, "test_console_browser: npm ci failed (%s)\n", cmd);
        return -1;
    }
    return 0;
}

static void test_browser_suite(void **st)
{
    const char *src = env("BATON_SRC", ".");
    assert_int_equal(access("/usr/bin/chromium", X_OK), 0);
    char cmd[8192];
    /* the whole suite takes about two minutes on a loaded machine (a
     * run that waits out SMTP retries included); 300 s is the most it may
     * hang */
    snprintf(cmd, sizeof cmd,
             "cd '%s' && timeout -k 5 300 node --test --test-concurrency=1 "
             "tests/browser/console.test.mjs",
             src);
    int rc = sh(cmd);
    assert_int_equal(rc, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_browser_suite)};
    return cmocka_run_group_tests(tests, setup, NULL);
}
