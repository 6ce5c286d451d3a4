/* The logger: levels filter, text and JSON lines are well formed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "support/fs.h"

/* Run fn with stderr sent to a file; return what it wrote. */
static char *capture(void (*fn)(void))
{
    char path[] = "/tmp/baton-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    fn();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fd);
    char *out = file_read(path, NULL);
    unlink(path);
    return out;
}

static void emit(void)
{
    log_msg(BATON_LOG_DEBUG, "core", "hidden %d", 1);
    log_msg(BATON_LOG_INFO, "channel email", "sent %d message(s)", 3);
    log_msg(BATON_LOG_ERROR, "core", "quote \" and newline\n");
}

static void test_text(void **st)
{
    log_configure(BATON_LOG_INFO, 0);
    char *out = capture(emit);
    assert_null(strstr(out, "hidden"));
    assert_non_null(strstr(out, "Z info  [channel email] sent 3 message(s)\n"));
    assert_non_null(strstr(out, "Z error [core] quote \" and newline\n"));
    free(out);
}

static void test_json(void **st)
{
    log_configure(BATON_LOG_DEBUG, 1);
    char *out = capture(emit);
    int lines = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        json_error_t e;
        json_t *o = json_loads(line, 0, &e);
        assert_non_null(o);
        assert_true(json_is_string(json_object_get(o, "time")));
        assert_true(json_is_string(json_object_get(o, "level")));
        if (lines == 2)
            assert_string_equal(json_string_value(json_object_get(o, "msg")),
                                "quote \" and newline\n");
        json_decref(o);
        lines++;
    }
    assert_int_equal(lines, 3);
    free(out);
    baton_log_level l;
    assert_int_equal(log_level_parse("warn", &l), 0);
    assert_int_equal(l, BATON_LOG_WARN);
    assert_int_equal(log_level_parse("loud", &l), -1);
    log_configure(BATON_LOG_INFO, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_text), cmocka_unit_test(test_json)};
    return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
